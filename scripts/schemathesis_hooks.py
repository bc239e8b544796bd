"""Schemathesis hooks for scripts/schemathesis.sh: point part of the generated requests at the
document and session that the script seeded, so that the 2xx paths run too and not only the 404s
that random document ids get.

The spec's examples name the placeholders of the API Gateway fixtures in events/api (document
00000000-0000-4000-8000-000000000001, session 1099511627777); `before_load_schema` replaces them
with the seeded ones, so the examples phase sends each route's fixture request for real. In the
fuzzing phase about half of the generated path ids and sessions are swapped for the seeded ones,
but only where the generated value was valid already: a negative case keeps the invalid part
that makes it negative.

`DELETE /documents/{id}` gets a second, disposable document instead, in every phase and also
when schemathesis reuses an id it saw in a response: deleting the seeded document would turn the
rest of the run into 404s.

Bodies that are not UTF-8 are not sent: `cargo lambda watch` cannot put them in a Lambda event and
answers 500 itself, before the function runs (the function reads bodies as bytes and answers 400
to any that is not JSON).
"""

import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

PLACEHOLDER_DOC = "00000000-0000-4000-8000-000000000001"
PLACEHOLDER_SESSION = 1099511627777
MAX_WIRE_ID = (1 << 53) - 1
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

DOC = os.environ["COLLAB_SEED_DOC"]
DISPOSABLE_DOC = os.environ["COLLAB_SEED_DISPOSABLE_DOC"]
SESSION = int(os.environ["COLLAB_SEED_SESSION"])


def _is_delete_document(method: str, path: str) -> bool:
    return method.lower() == "delete" and path == "/documents/{id}"


def _seeded(value: Any) -> Any:
    """`value` with the fixture placeholders replaced by the seeded document and session."""
    if isinstance(value, dict):
        return {k: _seeded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_seeded(v) for v in value]
    if isinstance(value, str):
        return value.replace(PLACEHOLDER_DOC, DOC)
    if isinstance(value, int) and not isinstance(value, bool) and value == PLACEHOLDER_SESSION:
        return SESSION
    return value


@schemathesis.hook
def before_load_schema(context, raw_schema):
    delete = raw_schema["paths"]["/documents/{id}"]["delete"]
    # An operation-level parameter overrides the path-level one of the same name.
    delete["parameters"] = [
        dict(raw_schema["components"]["parameters"]["DocumentId"], example=DISPOSABLE_DOC)
    ]
    for item in raw_schema["paths"].values():
        for key, value in list(item.items()):
            item[key] = _seeded(value)
    parameters = raw_schema["components"]["parameters"]
    parameters["DocumentId"] = _seeded(parameters["DocumentId"])


def _valid_site(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_WIRE_ID


def _with_seeded_id(operation, params: Any) -> Any:
    if not isinstance(params, dict) or not (isinstance(params.get("id"), str) and UUID.match(params["id"])):
        return params
    doc = DISPOSABLE_DOC if _is_delete_document(operation.method, operation.path) else DOC
    params = {**params, "id": doc}
    n = params.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and 1 <= n < 2**31:
        params["n"] = 1  # the seeded document's snapshot
    return params


def _with_seeded_session(body: Any) -> Any:
    if not isinstance(body, dict) or not _valid_site(body.get("session")):
        return body
    body = {**body, "session": SESSION}
    ops = body.get("ops")
    if isinstance(ops, list):
        body["ops"] = [
            {**op, "id": {**op["id"], "sid": SESSION}}
            if isinstance(op, dict) and isinstance(op.get("id"), dict) and _valid_site(op["id"].get("sid"))
            else op
            for op in ops
        ]
    return body


@schemathesis.hook
def before_generate_path_parameters(context, strategy):
    operation = context.operation
    if operation is None or "{id}" not in operation.path:
        return strategy
    return st.one_of(strategy, strategy.map(lambda p: _with_seeded_id(operation, p)))


@schemathesis.hook
def before_generate_body(context, strategy):
    operation = context.operation
    if operation is None or not operation.path.endswith(("/operations", "/edits")):
        return strategy
    return st.one_of(strategy, strategy.map(_with_seeded_session))


def _consistent(case):
    """`case` with the seeded ids where they belong together: never DELETE the seeded document;
    a body that names the seeded session goes to the seeded document (schemathesis also fills
    path ids with ones it saw in responses, which the session does not belong to) and its ops are
    of the session's site."""
    params = case.path_parameters
    if not isinstance(params, dict):
        return case
    doc = params.get("id")
    if _is_delete_document(case.method, case.operation.path) and doc == DOC:
        case.path_parameters = {**params, "id": DISPOSABLE_DOC}
    elif (
        case.operation.path.endswith(("/operations", "/edits"))
        and isinstance(case.body, dict)
        and case.body.get("session") == SESSION
    ):
        case.body = _with_seeded_session(case.body)
        if isinstance(doc, str) and UUID.match(doc):
            case.path_parameters = {**params, "id": DOC}
    return case


@schemathesis.hook
def before_add_examples(context, examples):
    for case in examples:
        _consistent(case)


@schemathesis.hook
def map_case(context, case):
    return _consistent(case)


@schemathesis.hook
def filter_case(context, case):
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True
