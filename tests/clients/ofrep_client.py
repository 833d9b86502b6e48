"""The Python OFREP provider (PyPI openfeature-provider-ofrep, on openfeature-sdk).

Driven by tests/it/clients.rs, with the venv of scripts/clients.sh. Reads the
spec of ofrep-web.mjs on stdin and prints one JSON line:
{client, cases: {name: {flag: {value, variant, reason, errorCode}}}, serverOnly, unknown}.

The server key (Authorization: Bearer) evaluates every flag with each case's
context (the targetingKey, when there is one, becomes the context's targeting
key; a case without one sends a context with no targetingKey, as this client
does). An unknown flag must come back as the default with FLAG_NOT_FOUND; a
provider bound to the domain "public" with the public key asks for the
server-only flag.
"""

import json
import sys
from importlib.metadata import version

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

DEFAULTS = {
    "boolean": False,
    "string": "__default__",
    "integer": -1,
    "float": -1.5,
    "object": {"__default__": True},
}


def details_fn(client, kind):
    return {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }[kind]


def summary(details):
    reason = details.reason
    return {
        "value": details.value,
        "variant": details.variant,
        "reason": getattr(reason, "value", reason),
        "errorCode": getattr(details.error_code, "value", details.error_code),
    }


def context(raw):
    attrs = dict(raw)
    key = attrs.pop("targetingKey", None)
    return EvaluationContext(targeting_key=key, attributes=attrs)


def main():
    spec = json.load(sys.stdin)
    base = spec["baseUrl"]
    server_key, public_key = spec["serverKey"], spec["publicKey"]
    api.set_provider(
        OFREPProvider(base, headers_factory=lambda: {"Authorization": f"Bearer {server_key}"}, timeout=5.0)
    )
    api.set_provider(
        OFREPProvider(base, headers_factory=lambda: {"X-API-Key": public_key}, timeout=5.0),
        domain="public",
    )
    client = api.get_client()

    cases = {}
    for case in spec["cases"]:
        ctx = context(case["context"])
        cases[case["name"]] = {
            key: summary(details_fn(client, kind)(key, DEFAULTS[kind], ctx))
            for key, kind in spec["allFlags"].items()
        }

    first = context(spec["cases"][0]["context"])
    unknown = summary(client.get_boolean_details(spec["unknownFlag"], False, first))
    server_only = summary(
        api.get_client("public").get_object_details(spec["serverOnlyFlag"], DEFAULTS["object"], first)
    )
    api.shutdown()
    print(
        json.dumps(
            {
                "client": f"openfeature-provider-ofrep@{version('openfeature-provider-ofrep')}"
                f" + openfeature-sdk@{version('openfeature-sdk')}",
                "cases": cases,
                "serverOnly": server_only,
                "unknown": unknown,
            }
        )
    )


if __name__ == "__main__":
    main()
