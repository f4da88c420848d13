"""The pickle pre-scan library: a policy's globals only, checked on the real stack; never unpickles anything.

The scans run under a fake torch-like policy (``torchlike.TORCHLIKE_POLICY``); the torch plugin tests its own.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ArtifactRejected
from service.security import pickle_scan
from service.security.pickle_scan import PicklePolicy, PickleSummary, UnsafePickle
from tests.unit.security.torchlike import (
    EMPTY_TUPLE,
    MARK,
    PROTO2,
    REDUCE,
    STOP,
    TORCHLIKE_POLICY,
    Payload,
    global_op,
    legacy_torch_save,
    state_dict_pickle,
    unicode_op,
)


def scan_pickle_bytes(data: bytes) -> PickleSummary:
    return pickle_scan.scan_pickle_bytes(data, policy=TORCHLIKE_POLICY)


def scan_pickle_file(path: Path) -> PickleSummary:
    return pickle_scan.scan_pickle_file(path, policy=TORCHLIKE_POLICY)


DANGEROUS = [
    ("os", "system"),
    ("posix", "system"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("subprocess", "Popen"),
    ("importlib", "import_module"),
    ("pickle", "loads"),
    ("runpy", "_run_code"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("numpy", "load"),
    ("operator", "attrgetter"),
    ("webbrowser", "open"),
    ("__builtin__", "eval"),
]


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_reduce_payload_refused_at_every_protocol_and_never_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickle, match=r"refused: the pickle references '(posix|os)\.system'"):
        scan_pickle_bytes(pickle.dumps({"weight": Payload(marker)}, protocol=protocol))
    assert not marker.exists()


def test_genuine_state_dict_passes_and_declares_its_storages() -> None:
    summary = scan_pickle_bytes(state_dict_pickle({"w": 12, "b": 3}))
    assert summary.tensors == 2
    assert summary.storage_bytes == {"0": 48, "1": 12}
    assert summary.declared_bytes == 60


def test_storage_itemsizes_follow_the_storage_type() -> None:
    assert scan_pickle_bytes(state_dict_pickle({"w": 10}, storage="HalfStorage")).declared_bytes == 20
    assert scan_pickle_bytes(state_dict_pickle({"w": 10}, storage="LongStorage")).declared_bytes == 80


def test_foreign_callable_inside_an_otherwise_genuine_state_dict_refused() -> None:
    with pytest.raises(UnsafePickle, match="'builtins.exec'"):
        scan_pickle_bytes(state_dict_pickle({"w": 4}, rebuild=("builtins", "exec")))


@pytest.mark.parametrize(("module", "name"), DANGEROUS)
def test_dangerous_globals_refused_by_name(module: str, name: str) -> None:
    blob = PROTO2 + global_op(module, name) + STOP
    with pytest.raises(UnsafePickle, match="refused"):
        scan_pickle_bytes(blob)


def test_stack_global_checks_the_real_stack_not_the_last_strings() -> None:
    # pushes "builtins" "eval", then "torch" "Size" and pops them: STACK_GLOBAL sees builtins.eval
    sneaky = (
        b"\x80\x04"
        + unicode_op("builtins")
        + unicode_op("eval")
        + unicode_op("torch")
        + unicode_op("Size")
        + b"00"  # POP, POP
        + b"\x93"  # STACK_GLOBAL
        + STOP
    )
    with pytest.raises(UnsafePickle, match="'builtins.eval'"):
        scan_pickle_bytes(sneaky)
    honest = b"\x80\x04" + unicode_op("torch") + unicode_op("Size") + b"\x93" + STOP
    assert scan_pickle_bytes(honest).tensors == 0


def test_stack_global_through_the_memo_is_resolved() -> None:
    memoised = (
        b"\x80\x04"
        + unicode_op("os")
        + b"q\x00"
        + b"0"
        + unicode_op("system")
        + b"q\x01"
        + b"0"  # memo, POP
        + b"h\x00h\x01"  # BINGET 0, BINGET 1
        + b"\x93"
        + STOP
    )
    with pytest.raises(UnsafePickle, match="'os.system'"):
        scan_pickle_bytes(memoised)


def test_stack_global_with_computed_operands_refused() -> None:
    computed = b"\x80\x04" + global_op("torch", "Size") + EMPTY_TUPLE + REDUCE + unicode_op("x") + b"\x93" + STOP
    with pytest.raises(UnsafePickle, match="computed"):
        scan_pickle_bytes(computed)


def test_reduce_on_a_computed_callable_refused() -> None:
    # torch.Size() then call its result: only allowlisted globals may be called
    blob = PROTO2 + global_op("torch", "Size") + EMPTY_TUPLE + REDUCE + EMPTY_TUPLE + REDUCE + STOP
    with pytest.raises(UnsafePickle, match="REDUCE on a computed callable"):
        scan_pickle_bytes(blob)


def test_foreign_persistent_ids_and_extensions_refused() -> None:
    foreign_pid = PROTO2 + MARK + unicode_op("module") + unicode_op("os") + b"t" + b"Q" + STOP
    with pytest.raises(UnsafePickle, match="persistent id"):
        scan_pickle_bytes(foreign_pid)
    with pytest.raises(UnsafePickle, match="persistent id"):
        scan_pickle_bytes(b"Pmy-object\n.")
    with pytest.raises(UnsafePickle, match="extension registry"):
        scan_pickle_bytes(PROTO2 + b"\x82\x01" + STOP)


def test_plain_containers_pass() -> None:
    value = collections.OrderedDict(a=[1, 2.0, "x", (3, None)], b={"c": {1, 2}, "d": b"raw", "e": complex(1, 2)})
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert scan_pickle_bytes(pickle.dumps(value, protocol=protocol)).tensors == 0


def test_python2_names_are_mapped_like_the_unpickler_does() -> None:
    assert scan_pickle_bytes(PROTO2 + global_op("__builtin__", "set") + STOP).tensors == 0
    with pytest.raises(UnsafePickle, match="'builtins.eval'"):
        scan_pickle_bytes(PROTO2 + global_op("__builtin__", "eval") + STOP)


def test_truncated_and_trailing_bytes_refused() -> None:
    blob = state_dict_pickle({"w": 4})
    with pytest.raises(ArtifactRejected, match="truncated|malformed"):
        scan_pickle_bytes(blob[:-5])
    with pytest.raises(ArtifactRejected, match="unexpected bytes after the pickle"):
        scan_pickle_bytes(blob + pickle.dumps(Payload(Path("/nonexistent"))))


def test_legacy_torch_save_scans_all_five_pickles(tmp_path: Path) -> None:
    good = tmp_path / "legacy.pt"
    good.write_bytes(legacy_torch_save(state_dict_pickle({"w": 2}), ["0"], [b"\x00" * 8]))
    summary = scan_pickle_file(good)
    assert (summary.tensors, summary.declared_bytes) == (1, 8)
    # a payload hidden in the storage-keys pickle (the fifth) is found too
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    body = legacy_torch_save(state_dict_pickle({"w": 2}), ["0"], [b"\x00" * 8])
    keys = pickle.dumps(["0"], protocol=2)
    evil.write_bytes(body.replace(keys, pickle.dumps([Payload(marker)], protocol=2), 1))
    with pytest.raises(UnsafePickle, match="storage keys"):
        scan_pickle_file(evil)
    assert not marker.exists()


def test_single_pickle_file_with_a_second_pickle_appended_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4) + pickle.dumps(Payload(tmp_path / "m"), protocol=4))
    with pytest.raises(ArtifactRejected, match="unexpected bytes"):
        scan_pickle_file(path)


def test_the_policy_decides_what_passes() -> None:
    genuine = state_dict_pickle({"w": 4})
    with pytest.raises(UnsafePickle, match=r"references 'collections\.OrderedDict', which this backend does not"):
        pickle_scan.scan_pickle_bytes(genuine, policy=PicklePolicy(allowed_globals=frozenset()))
    no_storages = PicklePolicy(allowed_globals=TORCHLIKE_POLICY.allowed_globals)
    with pytest.raises(UnsafePickle, match="'torch.FloatStorage' is not a storage type"):
        pickle_scan.scan_pickle_bytes(genuine, policy=no_storages)
    with pytest.raises(UnsafePickle, match="'builtins.eval', save tensors only"):
        hinted = PicklePolicy(allowed_globals=frozenset(), refusal_hint="save tensors only")
        pickle_scan.scan_pickle_bytes(PROTO2 + global_op("builtins", "eval") + STOP, policy=hinted)


def test_caps_refuse_before_allocation() -> None:
    summary = scan_pickle_bytes(state_dict_pickle({"w": 10, "b": 2}))
    summary.check_caps(48, max_tensors=2)
    with pytest.raises(ArtifactRejected, match="declares 2 tensors"):
        summary.check_caps(48, max_tensors=1)
    with pytest.raises(ArtifactRejected, match="declare 48 bytes but the artifact has only 47: refused before"):
        summary.check_caps(47, max_tensors=2)


# ------------------------------------------------------------------ properties: only declared errors, ever

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_the_declared_error(data: bytes) -> None:
    with contextlib.suppress(ArtifactRejected):
        scan_pickle_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 400))
def test_mutated_state_dicts_only_raise_the_declared_error(noise: bytes, cut: int) -> None:
    base = state_dict_pickle({"w": 4, "b": 2})
    with contextlib.suppress(ArtifactRejected):
        scan_pickle_bytes(base[:cut] + noise + base[cut:])


@settings(max_examples=200, deadline=None)
@given(plain, st.integers(3, pickle.HIGHEST_PROTOCOL))
def test_plain_data_always_passes(value: object, protocol: int) -> None:
    # (protocols 0-2 pickle bytes through builtins.bytes, which torch's weights_only loader refuses too)
    assert scan_pickle_bytes(pickle.dumps(value, protocol=protocol)).tensors == 0


@settings(max_examples=100, deadline=None)
@given(plain, st.sampled_from(DANGEROUS), st.integers(2, pickle.HIGHEST_PROTOCOL))
def test_any_foreign_global_anywhere_is_refused(value: object, target: tuple[str, str], protocol: int) -> None:
    module, name = target
    planted = pickle.dumps([value], protocol=protocol)
    # insert "GLOBAL module name; POP" right after the PROTO (and FRAME) header: any position would do
    header = 2 if protocol < 4 else 11
    blob = planted[:header] + global_op(module, name) + b"0" + planted[header:]
    with pytest.raises(UnsafePickle):
        scan_pickle_bytes(blob)
