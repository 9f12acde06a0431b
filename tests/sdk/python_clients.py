"""Real Python tracking SDKs against a Tributary gateway, for tests/sdk_clients.rs.

    python3 python_clients.py pins
        the pinned packages, as JSON: {"<sdk>": {"package", "version", "registry": "pypi"}}
    python3 python_clients.py run <sdk>
        with SDK_DIR (a `pip install --target` folder holding the pinned package), GATEWAY_URL,
        WRITE_KEY, USER_ID, RUN_ID: sends one identify, one track and one page, each flushed
        alone, then a batch of BATCH_SIZE events flushed together; shuts the client down and
        prints one JSON summary line on stdout (logs go to stderr).

The summary has the same fields as node_clients.mjs: sdk, package, version, flushes (deliveries
the script asked for: what the gateway must count if nothing was resent), http_requests and
requests (every HTTP attempt the SDK made, seen by a hook on its requests session: status and
messageIds), errors (every on_error call), success (no error at all), events.

Both SDKs send from a consumer thread that retries a failed upload (with backoff) and then
calls on_error; they treat any status but 200 as a failure.
"""

import gzip
import json
import os
import sys
import time

# Exact versions: the test installs these (and only these) into its SDK cache.
PINS = {
    # Segment's classic Python SDK (the package later renamed segment-analytics-python).
    "segment-python": {"package": "analytics-python", "version": "1.4.post1", "registry": "pypi", "module": "analytics"},
    "rudderstack-python": {"package": "rudder-sdk-python", "version": "2.1.9", "registry": "pypi", "module": "rudderstack.analytics"},
}

# Small, so that a failing case does not wait out long backoffs; the test asserts that no
# retry happened at all.
MAX_RETRIES = 1
# The consumer thread waits this long for more events before it uploads what it has.
UPLOAD_INTERVAL_S = 0.5
BATCH_SIZE = 4


def env(name):
    v = os.environ.get(name)
    if not v:
        raise SystemExit("%s is not set" % name)
    return v


def plan(run_id, user_id):
    """The events of one run (the same as node_clients.mjs): ids unique per run."""
    mid = lambda n: "%s-%s" % (run_id, n)
    singles = [
        {"type": "identify", "message_id": mid("identify"), "user_id": user_id,
         "traits": {"email": "%s@example.com" % user_id, "plan": "pro"}},
        {"type": "track", "message_id": mid("track"), "user_id": user_id, "event": "Order Completed",
         "properties": {"total": 42.5, "currency": "EUR"}},
        {"type": "page", "message_id": mid("page"), "user_id": user_id, "name": "Pricing",
         "properties": {"path": "/pricing"}},
    ]
    batch = [
        {"type": "track", "message_id": mid("batch-0"), "user_id": user_id, "event": "Product Viewed",
         "properties": {"sku": "A-1"}},
        {"type": "track", "message_id": mid("batch-1"), "user_id": user_id, "event": "Product Added",
         "properties": {"sku": "A-1", "quantity": 2}},
        {"type": "page", "message_id": mid("batch-2"), "user_id": user_id, "name": "Cart",
         "properties": {"path": "/cart"}},
        {"type": "identify", "message_id": mid("batch-3"), "user_id": user_id,
         "traits": {"last_cart_total": 85}},
    ]
    assert len(batch) == BATCH_SIZE
    return singles, batch


def body_message_ids(data, headers):
    try:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if (headers or {}).get("Content-Encoding") == "gzip" or data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return [e.get("messageId") for e in json.loads(data.decode("utf-8")).get("batch", [])]
    except Exception as e:  # the summary says so; the test fails on it
        return ["<unreadable body: %r>" % e]


def run(sdk, pin):
    sdk_dir = env("SDK_DIR")
    # The SDK from its cache folder, ahead of anything installed for this interpreter.
    sys.path.insert(0, sdk_dir)
    import importlib
    import importlib.metadata

    module = importlib.import_module(pin["module"])
    request_module = importlib.import_module(pin["module"] + ".request")
    client_module = importlib.import_module(pin["module"] + ".client")
    version = importlib.metadata.version(pin["package"])

    requests_seen = []
    errors = []
    session = request_module._session  # the module-level requests.Session every upload uses
    real_post = session.post

    def counting_post(url, *args, **kwargs):
        entry = {"status": None, "message_ids": body_message_ids(kwargs.get("data"), kwargs.get("headers"))}
        requests_seen.append(entry)
        try:
            res = real_post(url, *args, **kwargs)
        except Exception as e:
            entry["status"] = "%s: %s" % (type(e).__name__, e)
            raise
        entry["status"] = res.status_code
        return res

    session.post = counting_post

    def on_error(err, batch):
        ids = [m.get("messageId") for m in batch]
        errors.append("on_error: %s: %s (batch %s)" % (type(err).__name__, err, ids))

    client = client_module.Client(
        env("WRITE_KEY"),
        host=env("GATEWAY_URL"),
        on_error=on_error,
        max_retries=MAX_RETRIES,
        upload_size=BATCH_SIZE,
        upload_interval=UPLOAD_INTERVAL_S,
        timeout=15,
    )

    def send(e):
        fields = {k: v for k, v in e.items() if k != "type"}
        ok, _msg = getattr(client, e["type"])(**fields)
        if not ok:
            errors.append("%s %s: not queued" % (e["type"], e["message_id"]))

    singles, batch = plan(env("RUN_ID"), env("USER_ID"))
    started = time.monotonic()
    flushes = 0
    for e in singles:
        # one event: the consumer uploads it alone (it waits UPLOAD_INTERVAL_S for more, and
        # flush() blocks until it is done)
        send(e)
        client.flush()
        flushes += 1
    # BATCH_SIZE events queued at once: the consumer's upload is full, one request
    for e in batch:
        send(e)
    client.flush()
    flushes += 1
    client.shutdown()

    def describe(e):
        return {"message_id": e["message_id"], "type": e["type"], "user_id": e["user_id"],
                "name": e.get("event") or e.get("name")}

    return {
        "sdk": sdk,
        "package": pin["package"],
        "pinned_version": pin["version"],
        "version": version,
        "module_version": getattr(module, "VERSION", None) or getattr(module, "__version__", None),
        "max_retries": MAX_RETRIES,
        "flushes": flushes,
        "http_requests": len(requests_seen),
        "requests": requests_seen,
        "errors": errors,
        "success": not errors,
        "events": [describe(e) for e in singles + batch],
        "elapsed_ms": int((time.monotonic() - started) * 1000),
    }


def main():
    args = sys.argv[1:]
    if args == ["pins"]:
        print(json.dumps({k: {f: v for f, v in p.items() if f != "module"} for k, p in PINS.items()}))
        return
    if len(args) != 2 or args[0] != "run" or args[1] not in PINS:
        raise SystemExit("usage: python_clients.py pins | run <%s>" % "|".join(PINS))
    summary = run(args[1], PINS[args[1]])
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
