"""``/schema/swagger`` and ``/schema/redoc`` render their operations with every outside request aborted."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_swagger_renders_offline(open_tab: Any) -> None:
    tab = open_tab()
    tab.page.goto(f"{tab.base_url}/schema/swagger")
    tab.page.locator(".opblock").first.wait_for()
    paths = tab.page.locator(".opblock-summary-path").all_inner_texts()
    assert "/v2/models/{model_name}/infer" in [p.replace("\u200b", "") for p in paths]
    assert len(paths) >= 25
    tab.page.get_by_role("button", name="Authorize").wait_for()  # shown because operations declare security
    locks = tab.page.locator(".opblock .authorization__btn")
    assert locks.count() >= 15  # one per admin operation
    tab.shot("docs-swagger")


def test_redoc_renders_offline(open_tab: Any) -> None:
    tab = open_tab()
    tab.page.goto(f"{tab.base_url}/schema/redoc")
    tab.page.locator("[data-section-id^='operation/']").first.wait_for()
    assert tab.page.locator("[data-section-id^='operation/']").count() >= 25
    tab.page.locator("h2", has_text="Set the weighted A/B split (weights sum to 100)").first.wait_for()
    tab.shot("docs-redoc")
