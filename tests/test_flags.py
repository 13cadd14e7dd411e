"""Flag stores: the flagd file store against the real OpenFeature SDK (flagd provider, in-process
file mode), and the HTTP stores against a local server speaking their API shapes.

A test against a real ``flagd`` binary is not here: this project's only route to it is
``go install github.com/open-feature/flagd/flagd``, which the Go module proxy refuses (403).
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fairwatch.alerts.flags import (
    FlagdFileStore,
    FlagStoreError,
    FlagStoreHTTPError,
    HttpClient,
    LaunchDarklyStore,
    UnknownFlagError,
    UnknownVariantError,
    UnleashStore,
    WebhookStore,
    flag_store_from_config,
)
from fairwatch.alerts.flags.base import UNKNOWN_VARIANT
from fairwatch.alerts.flags.factory import BAD_KIND, MISSING_KEYS, UNKNOWN_KEYS

IN_CI = os.environ.get("CI", "").lower() == "true"
FLAG = "loan-model-version"

FLAG_FILE: dict[str, Any] = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "metadata": {"owner": "ml-platform", "version": 7},
    "flags": {
        FLAG: {
            "state": "ENABLED",
            "variants": {"v2": "v2", "v3": "v3"},
            "defaultVariant": "v3",
            "metadata": {"note": "candidate v3 since 2024-05-01"},
        },
        "new-ui": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"$ref": "beta-testers"}, "on", None]},
        },
        "threshold": {
            "state": "DISABLED",
            "variants": {"low": 0.45, "high": 0.55, "big": 12345678901234567890},
            "defaultVariant": "low",
        },
    },
    "$evaluators": {"beta-testers": {"in": ["@example.org", {"var": "email"}]}},
}


def _need(what: str, install: str) -> None:
    msg = f"{what} is not available; install it with: {install}"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def flag_path(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FLAG_FILE, indent=2), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- flagd file
def test_current_and_set_variant(flag_path: Path) -> None:
    store = FlagdFileStore(flag_path)
    assert store.current(FLAG) == "v3"
    change = store.set_variant(FLAG, "v2", reason="tier 3: DI 0.61 for race=Black")
    assert (change.previous, change.variant, change.changed, change.noop) == (
        "v3",
        "v2",
        True,
        False,
    )
    assert store.current(FLAG) == "v2"


def test_rewrite_preserves_everything_else(flag_path: Path) -> None:
    os.chmod(flag_path, 0o640)
    FlagdFileStore(flag_path).set_variant(FLAG, "v2", reason="rollback")
    after = json.loads(flag_path.read_text(encoding="utf-8"))
    expected = copy.deepcopy(FLAG_FILE)
    expected["flags"][FLAG]["defaultVariant"] = "v2"
    assert after == expected
    assert list(after) == list(FLAG_FILE)  # key order kept too
    assert after["flags"]["threshold"]["variants"]["big"] == 12345678901234567890
    assert flag_path.stat().st_mode & 0o777 == 0o640
    leftovers = [p.name for p in flag_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_same_variant_is_a_noop_without_write(flag_path: Path) -> None:
    store = FlagdFileStore(flag_path)
    mtime = flag_path.stat().st_mtime_ns
    inode = flag_path.stat().st_ino
    change = store.set_variant(FLAG, "v3", reason="already live")
    assert change.noop and not change.changed
    assert (flag_path.stat().st_mtime_ns, flag_path.stat().st_ino) == (mtime, inode)


def test_dry_run_does_not_write(flag_path: Path) -> None:
    before = flag_path.read_bytes()
    change = FlagdFileStore(flag_path).set_variant(FLAG, "v2", reason="drill", dry_run=True)
    assert change.dry_run and not change.changed and change.previous == "v3"
    assert flag_path.read_bytes() == before


def test_unknown_variant_error_names_flag_value_and_choices(flag_path: Path) -> None:
    store = FlagdFileStore(flag_path)
    with pytest.raises(UnknownVariantError) as err:
        store.set_variant(FLAG, "v9", reason="typo")
    assert str(err.value) == UNKNOWN_VARIANT.format(flag_key=FLAG, variant="v9", valid=["v2", "v3"])
    assert "'v9'" in str(err.value) and FLAG in str(err.value)
    with pytest.raises(UnknownFlagError, match="'nope' not found"):
        store.current("nope")
    with pytest.raises(ValueError, match="non-empty reason"):
        store.set_variant(FLAG, "v2", reason=" ")


def test_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(FlagStoreError, match="invalid JSON"):
        FlagdFileStore(path).current(FLAG)
    with pytest.raises(FlagStoreError, match="missing"):
        FlagdFileStore(tmp_path / "absent.json").current(FLAG)


def test_concurrent_reader_never_sees_a_partial_file(flag_path: Path) -> None:
    store = FlagdFileStore(flag_path)
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                with open(flag_path, encoding="utf-8") as fh:
                    data = json.load(fh)
                seen.append(data["flags"][FLAG]["defaultVariant"])
                assert data["flags"]["new-ui"] == FLAG_FILE["flags"]["new-ui"]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(200):
            store.set_variant(FLAG, "v2" if i % 2 == 0 else "v3", reason=f"flip {i}")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert len(seen) > 0 and set(seen) <= {"v2", "v3"}
    assert store.current(FLAG) == "v3"


def test_concurrent_writers_serialise(flag_path: Path) -> None:
    stores = [FlagdFileStore(flag_path) for _ in range(4)]
    barrier = threading.Barrier(4)

    def writer(s: FlagdFileStore, variant: str) -> None:
        barrier.wait()
        for _ in range(25):
            s.set_variant(FLAG, variant, reason="race")

    threads = [threading.Thread(target=writer, args=(s, "v2" if i % 2 else "v3")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    data = json.loads(flag_path.read_text(encoding="utf-8"))
    assert data["flags"]["new-ui"] == FLAG_FILE["flags"]["new-ui"]
    assert data["flags"][FLAG]["defaultVariant"] in {"v2", "v3"}


# ---------------------------------------------------------- OpenFeature SDK, file mode
def _wait_for(fn: Any, expected: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    value = fn()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = fn()
    return value


@pytest.mark.integration
def test_openfeature_sdk_in_process_file_mode_sees_rollback(flag_path: Path) -> None:
    try:
        from openfeature import api
        from openfeature.contrib.provider.flagd import FlagdProvider
        from openfeature.contrib.provider.flagd.config import ResolverType
    except ImportError:
        _need(
            "the OpenFeature SDK with the flagd provider",
            "pip install openfeature-sdk openfeature-provider-flagd",
        )
    provider = FlagdProvider(
        resolver_type=ResolverType.FILE,
        offline_flag_source_path=str(flag_path),
        deadline_ms=100,  # the file watcher polls the mtime at this interval
    )
    domain = "fairwatch-test-serving-app"
    api.set_provider_and_wait(provider, domain)
    try:
        client = api.get_client(domain)
        details = client.get_string_details(FLAG, "fallback")
        assert (details.value, details.variant) == ("v3", "v3")
        FlagdFileStore(flag_path).set_variant(FLAG, "v2", reason="tier 3 rollback")
        assert _wait_for(lambda: client.get_string_value(FLAG, "fallback"), "v2") == "v2"
        # targeting and the other flags still evaluate as before
        assert client.get_boolean_value("new-ui", True) is False
    finally:
        provider.shutdown()
        api.clear_providers()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ HTTP contract servers
class Recorder:
    """A tiny stateful fake of a flag service: records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        self.fail_next: list[int] = []
        self.lock = threading.Lock()

    def writes(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] != "GET"]


def _server(handle: Any) -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(raw) if raw else None,
            }
            with rec.lock:
                rec.requests.append(entry)
                if rec.fail_next:
                    status, body = rec.fail_next.pop(0), {"message": "try later"}
                else:
                    status, body = handle(rec, entry)
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _do

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", rec
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _client() -> HttpClient:
    return HttpClient(timeout=2, retries=2, backoff=0.01, backoff_max=0.02)


# -- Unleash
UNLEASH_TOKEN = "user:abc123"
FEATURE_PATH = f"/api/admin/projects/lending/features/{FLAG}"


def _unleash(rec: Recorder, req: dict[str, Any]) -> tuple[int, Any]:
    if req["headers"].get("authorization") != UNLEASH_TOKEN:
        return 401, {"message": "no token"}
    feature = rec.state["feature"]
    env = next(e for e in feature["environments"] if e["name"] == "production")
    if req["method"] == "GET" and req["path"] == FEATURE_PATH:
        return 200, feature
    if req["method"] == "GET":
        return 404, {"message": "not found"}
    if req["method"] == "POST" and req["path"] == f"{FEATURE_PATH}/environments/production/off":
        env["enabled"] = False
        return 200, None
    if req["method"] == "POST" and req["path"] == f"{FEATURE_PATH}/environments/production/on":
        env["enabled"] = True
        return 200, None
    prefix = f"{FEATURE_PATH}/environments/production/strategies/"
    if req["method"] == "PUT" and req["path"].startswith(prefix):
        sid = req["path"][len(prefix) :]
        strategy = next(s for s in env["strategies"] if s["id"] == sid)
        strategy.update(req["body"])
        return 200, strategy
    return 405, {"message": "unexpected"}


@pytest.fixture
def unleash() -> Iterator[tuple[str, Recorder]]:
    gen = _server(_unleash)
    url, rec = next(gen)
    rec.state["feature"] = {
        "name": FLAG,
        "project": "lending",
        "environments": [
            {"name": "development", "enabled": True, "strategies": []},
            {
                "name": "production",
                "enabled": True,
                "strategies": [
                    {
                        "id": "s-1",
                        "name": "flexibleRollout",
                        "title": "everyone",
                        "disabled": False,
                        "sortOrder": 0,
                        "constraints": [],
                        "segments": [],
                        "parameters": {"rollout": "100", "stickiness": "default", "groupId": FLAG},
                        "variants": [
                            {
                                "name": "v3",
                                "weight": 1000,
                                "weightType": "variable",
                                "stickiness": "default",
                                "payload": {"type": "string", "value": "model-v3"},
                            },
                        ],
                    }
                ],
            },
        ],
    }
    yield url, rec
    next(gen, None)


def test_unleash_strategy_variant_switch(unleash: tuple[str, Recorder]) -> None:
    url, rec = unleash
    store = UnleashStore(
        url,
        UNLEASH_TOKEN,
        project="lending",
        environment="production",
        variants=["v2", "v3"],
        client=_client(),
    )
    assert store.current(FLAG) == "v3"
    change = store.set_variant(FLAG, "v2", reason="tier 3")
    assert change.changed and change.previous == "v3"
    (put,) = rec.writes()
    assert put["method"] == "PUT"
    assert put["path"] == f"{FEATURE_PATH}/environments/production/strategies/s-1"
    assert put["headers"]["authorization"] == UNLEASH_TOKEN
    assert put["headers"]["content-type"] == "application/json"
    body = put["body"]
    assert body["name"] == "flexibleRollout" and body["parameters"]["rollout"] == "100"
    assert "id" not in body
    assert body["variants"] == [
        {
            "name": "v2",
            "weight": 1000,
            "weightType": "variable",
            "stickiness": "default",
            "payload": {"type": "string", "value": "v2"},
        }
    ]
    assert store.current(FLAG) == "v2"
    # idempotent: the second identical call makes no change request
    again = store.set_variant(FLAG, "v2", reason="tier 3")
    assert again.noop and not again.changed
    assert len(rec.writes()) == 1
    with pytest.raises(UnknownVariantError, match="'v9'"):
        store.set_variant(FLAG, "v9", reason="typo")
    assert len(rec.writes()) == 1


def test_unleash_toggle_mode_and_dry_run(unleash: tuple[str, Recorder]) -> None:
    url, rec = unleash
    store = UnleashStore(url, UNLEASH_TOKEN, project="lending", mode="toggle", client=_client())
    assert store.current(FLAG) == "on"
    assert store.set_variant(FLAG, "off", reason="drill", dry_run=True).dry_run
    assert rec.writes() == []
    assert store.set_variant(FLAG, "off", reason="tier 3").changed
    assert [(r["method"], r["path"]) for r in rec.writes()] == [("POST", f"{FEATURE_PATH}/environments/production/off")]
    assert rec.writes()[0]["headers"]["authorization"] == UNLEASH_TOKEN
    assert store.set_variant(FLAG, "off", reason="tier 3").noop
    assert len(rec.writes()) == 1


def test_unleash_errors(unleash: tuple[str, Recorder]) -> None:
    url, rec = unleash
    with pytest.raises(UnknownFlagError):
        UnleashStore(url, UNLEASH_TOKEN, project="lending", client=_client()).current("ghost")
    with pytest.raises(FlagStoreHTTPError, match="HTTP 401") as err:
        UnleashStore(url, "wrong", project="lending", client=_client()).current(FLAG)
    assert err.value.status == 401
    with pytest.raises(FlagStoreError, match="no environment 'staging'"):
        UnleashStore(url, UNLEASH_TOKEN, project="lending", environment="staging", client=_client()).current(FLAG)
    with pytest.raises(ValueError, match="mode must be one of"):
        UnleashStore(url, UNLEASH_TOKEN, mode="flip")  # type: ignore[arg-type]


# -- LaunchDarkly
LD_TOKEN = "api-0000-test"
LD_PATH = f"/api/v2/flags/lending/{FLAG}"


def _ld(rec: Recorder, req: dict[str, Any]) -> tuple[int, Any]:
    if req["headers"].get("authorization") != LD_TOKEN:
        return 401, {"code": "unauthorized"}
    flag = rec.state["flag"]
    if req["method"] == "GET" and req["path"] == f"{LD_PATH}?env=production":
        return 200, flag
    if req["method"] == "PATCH" and req["path"] == LD_PATH:
        ctype = req["headers"].get("content-type", "")
        env = flag["environments"]["production"]
        ids = [v["_id"] for v in flag["variations"]]
        if ctype == "application/json; domain-model=launchdarkly.semanticpatch":
            body = req["body"]
            if body.get("environmentKey") != "production":
                return 400, {"code": "invalid_request"}
            for ins in body["instructions"]:
                if ins["kind"] == "updateFallthroughVariationOrRollout":
                    env["fallthrough"] = {"variation": ids.index(ins["variationId"])}
                elif ins["kind"] == "updateOffVariation":
                    env["offVariation"] = ids.index(ins["variationId"])
                else:
                    return 400, {"code": "invalid_request"}
            return 200, flag
        if ctype == "application/json":
            for op in req["body"]["patch"]:
                assert op["op"] == "replace"
                if op["path"] == "/environments/production/fallthrough/variation":
                    env["fallthrough"] = {"variation": op["value"]}
            return 200, flag
        return 415, {"code": "unsupported"}
    return 404, {"code": "not_found"}


@pytest.fixture
def launchdarkly() -> Iterator[tuple[str, Recorder]]:
    gen = _server(_ld)
    url, rec = next(gen)
    rec.state["flag"] = {
        "key": FLAG,
        "variations": [
            {"_id": "id-v2", "value": "v2", "name": "baseline v2"},
            {"_id": "id-v3", "value": "v3"},
        ],
        "environments": {
            "production": {"on": True, "fallthrough": {"variation": 1}, "offVariation": 0},
            "test": {"on": False, "fallthrough": {"variation": 0}, "offVariation": 0},
        },
    }
    yield url, rec
    next(gen, None)


def test_launchdarkly_semantic_patch(launchdarkly: tuple[str, Recorder]) -> None:
    url, rec = launchdarkly
    store = LaunchDarklyStore(LD_TOKEN, project="lending", environment="production", url=url, client=_client())
    assert store.current(FLAG) == "v3"
    change = store.set_variant(FLAG, "baseline v2", reason="tier 3: DI 0.61")
    assert change.changed and change.previous == "v3"
    (patch,) = rec.writes()
    assert patch["method"] == "PATCH" and patch["path"] == LD_PATH
    assert patch["headers"]["authorization"] == LD_TOKEN
    assert patch["headers"]["content-type"] == ("application/json; domain-model=launchdarkly.semanticpatch")
    assert patch["body"] == {
        "environmentKey": "production",
        "comment": "tier 3: DI 0.61",
        "instructions": [{"kind": "updateFallthroughVariationOrRollout", "variationId": "id-v2"}],
    }
    assert store.current(FLAG) == "baseline v2"
    assert store.set_variant(FLAG, "baseline v2", reason="again").noop
    assert len(rec.writes()) == 1
    with pytest.raises(UnknownVariantError, match=r"'v9'.*\['baseline v2', 'v3'\]"):
        store.set_variant(FLAG, "v9", reason="typo")


def test_launchdarkly_json_patch_and_retry(launchdarkly: tuple[str, Recorder]) -> None:
    url, rec = launchdarkly
    store = LaunchDarklyStore(LD_TOKEN, project="lending", url=url, patch_format="json", client=_client())
    rec.fail_next = [503, 429]  # the GET is retried past two transient errors
    change = store.set_variant(FLAG, "baseline v2", reason="rollback")
    assert change.changed
    patches = rec.writes()
    assert len(patches) == 1
    assert patches[0]["headers"]["content-type"] == "application/json"
    assert patches[0]["body"]["patch"] == [
        {"op": "replace", "path": "/environments/production/fallthrough/variation", "value": 0}
    ]
    assert len([r for r in rec.requests if r["method"] == "GET"]) == 3


def test_launchdarkly_off_variation_and_unreachable(launchdarkly: tuple[str, Recorder]) -> None:
    url, rec = launchdarkly
    store = LaunchDarklyStore(LD_TOKEN, project="lending", url=url, target="off", client=_client())
    assert store.current(FLAG) == "baseline v2"
    store.set_variant(FLAG, "v3", reason="test")
    assert rec.writes()[0]["body"]["instructions"] == [{"kind": "updateOffVariation", "variationId": "id-v3"}]
    dead = LaunchDarklyStore(LD_TOKEN, url=f"http://127.0.0.1:{_free_port()}", client=_client())
    with pytest.raises(FlagStoreHTTPError, match="after 3 attempt"):
        dead.current(FLAG)


# -- Webhook
def _webhook(rec: Recorder, req: dict[str, Any]) -> tuple[int, Any]:
    if req["headers"].get("authorization") != "Bearer s3cret":
        return 401, None
    if req["method"] == "GET" and req["path"] == f"/state/{FLAG}":
        return 200, {"variant": rec.state.get("variant", "v3")}
    if req["method"] == "POST" and req["path"] == "/rollback":
        rec.state["variant"] = req["body"]["variant"]
        return 202, {"accepted": True}
    return 404, None


@pytest.fixture
def webhook() -> Iterator[tuple[str, Recorder]]:
    gen = _server(_webhook)
    yield next(gen)
    next(gen, None)


def test_webhook_post_and_idempotency(webhook: tuple[str, Recorder]) -> None:
    url, rec = webhook
    store = WebhookStore(
        f"{url}/rollback",
        token="s3cret",
        state_url=url + "/state/{flag_key}",
        variants=["v2", "v3"],
        client=_client(),
    )
    assert store.current(FLAG) == "v3"
    change = store.set_variant(FLAG, "v2", reason="tier 3")
    (post,) = rec.writes()
    assert post["method"] == "POST" and post["path"] == "/rollback"
    assert post["headers"]["authorization"] == "Bearer s3cret"
    assert post["headers"]["content-type"] == "application/json"
    assert post["headers"]["idempotency-key"] == post["body"]["idempotency_key"]
    assert post["body"]["idempotency_key"] == change.detail["idempotency_key"]
    assert {k: post["body"][k] for k in ("flag_key", "variant", "previous", "reason", "dry_run")} == {
        "flag_key": FLAG,
        "variant": "v2",
        "previous": "v3",
        "reason": "tier 3",
        "dry_run": False,
    }
    assert store.set_variant(FLAG, "v2", reason="tier 3").noop
    assert len(rec.writes()) == 1


def test_webhook_without_state_url_remembers_last(webhook: tuple[str, Recorder]) -> None:
    url, rec = webhook
    store = WebhookStore(f"{url}/rollback", token="s3cret", client=_client())
    with pytest.raises(FlagStoreError, match="live variant is unknown"):
        store.current(FLAG)
    assert store.set_variant(FLAG, "v2", reason="r").changed
    assert store.current(FLAG) == "v2"
    assert store.set_variant(FLAG, "v2", reason="r").noop
    assert len(rec.writes()) == 1
    with pytest.raises(FlagStoreHTTPError, match="HTTP 401"):
        WebhookStore(f"{url}/rollback", client=_client()).set_variant(FLAG, "v2", reason="r")


# ---------------------------------------------------------------------------- factory
def test_factory_builds_each_kind(flag_path: Path) -> None:
    env = {"UNLEASH_TOKEN": "tok"}
    assert isinstance(flag_store_from_config({"kind": "flagd-file", "path": str(flag_path)}), FlagdFileStore)
    unleash = flag_store_from_config(
        {
            "kind": "unleash",
            "url": "http://u",
            "token_env": "UNLEASH_TOKEN",
            "project": "p",
            "environment": "production",
            "http": {"timeout": 1, "retries": 0},
        },
        environ=env,
    )
    assert isinstance(unleash, UnleashStore) and unleash.client.retries == 0
    assert "tok" not in json.dumps(unleash.describe())
    assert isinstance(
        flag_store_from_config({"kind": "launchdarkly", "token": "t", "project": "p", "environment": "e"}),
        LaunchDarklyStore,
    )
    assert isinstance(flag_store_from_config({"kind": "webhook", "url": "http://w"}), WebhookStore)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"kind": "etcd"},
            BAD_KIND.format(valid=["flagd-file", "launchdarkly", "unleash", "webhook"], kind="etcd"),
        ),
        ({}, "got None"),
        ({"kind": "flagd-file"}, MISSING_KEYS.format(kind="flagd-file", keys=["path"])),
        (
            {"kind": "flagd-file", "path": "x", "pth": "y"},
            UNKNOWN_KEYS.format(kind="flagd-file", keys=["pth"], valid=["fsync", "path"]),
        ),
        ({"kind": "webhook", "url": "u", "http": {"timeout": -1}}, "http.timeout must be"),
        ({"kind": "webhook", "url": "u", "http": {"tmeout": 1}}, "unknown key(s) ['tmeout']"),
        ({"kind": "webhook", "url": "u", "token_env": "NOPE_NOT_SET"}, "'NOPE_NOT_SET'"),
    ],
)
def test_factory_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        flag_store_from_config(config, environ={})
    assert message in str(err.value)
