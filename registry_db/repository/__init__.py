"""The registry repositories: the only place SQL lives, one repository per aggregate.

Rules enforced here whatever the caller:

- valid model names, version labels, aliases, plugin names, digests and actors;
- gap-free, unique version numbers under concurrent registration (:mod:`.catalog`);
- aliases and splits only point at active versions of the same model; weights are positive and sum to 100;
  a version an alias or split uses cannot be archived (:mod:`.routing`, :mod:`.catalog`);
- API keys are stored as sha256 hashes only (:mod:`.keys`);
- every mutation writes an audit row (actor, action, target, before/after) in its own transaction, and every
  change that affects routing bumps ``registry_state.generation`` there too, plus ``NOTIFY`` on PostgreSQL
  (:mod:`.unit_of_work`, shared by all of them).
"""

from __future__ import annotations

from registry_db.repository.audit import AuditRepository
from registry_db.repository.catalog import CatalogRepository
from registry_db.repository.keys import ApiKeyRepository, hash_api_key
from registry_db.repository.registry import Registry
from registry_db.repository.routing import RoutingRepository
from registry_db.repository.unit_of_work import NOTIFY_CHANNEL
from registry_db.validation import SCOPES

__all__ = (
    "NOTIFY_CHANNEL",
    "SCOPES",
    "ApiKeyRepository",
    "AuditRepository",
    "CatalogRepository",
    "Registry",
    "RoutingRepository",
    "hash_api_key",
)
