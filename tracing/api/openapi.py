"""The OpenAPI 3.1 document of the tracer API, served at /openapi.json."""

from __future__ import annotations

from tracing.models import CONTACT_FIELDS, VISIT_FIELDS, VISITOR_FIELDS
from tracing.settings import ApiOptions


def _string(description: str, fmt: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"type": "string", "description": description}
    if fmt:
        out["format"] = fmt
    return out


def _param(
    name: str, schema: dict[str, object], where: str = "query", required: bool = False
) -> dict[str, object]:
    return {"name": name, "in": where, "required": required, "schema": schema}


def _int(lo: int, hi: int, default: int, description: str) -> dict[str, object]:
    return {
        "type": "integer",
        "minimum": lo,
        "maximum": hi,
        "default": default,
        "description": description,
    }


def _object(fields: tuple[str, ...]) -> dict[str, object]:
    props: dict[str, object] = {}
    for f in fields:
        if "time" in f:
            props[f] = _string("ISO-8601 UTC", "date-time")
        elif f in ("degree", "scans"):
            props[f] = {"type": "integer"}
        elif f == "overlap_minutes":
            props[f] = {"type": ["number", "null"]}
        elif f == "via_person_id":
            props[f] = {"type": ["string", "null"], "description": "the F1 person (degree 2)"}
        else:
            props[f] = {"type": "string"}
    return {"type": "object", "properties": props, "required": list(fields)}


def _responses(ok: dict[str, object], errors: dict[str, object]) -> dict[str, object]:
    return {"200": ok, **errors}


def openapi_document(retention_days: int, options: ApiOptions) -> dict[str, object]:
    period = [
        _param("from", _string("start, ISO-8601 with offset", "date-time"), required=True),
        _param("to", _string("end, ISO-8601 with offset", "date-time"), required=True),
    ]
    paging = [
        _param("limit", _int(1, options.max_page_size, options.page_size, "rows per page")),
        _param("offset", _int(0, 2**31, 0, "first row of the page")),
        _param(
            "format",
            {
                "type": "string",
                "enum": ["json", "csv"],
                "default": "json",
                "description": "csv: the whole answer, streamed, formula-safe",
            },
        ),
    ]
    rule = [
        _param(
            "rule", {"type": "string", "enum": ["scan-window", "overlap"], "default": "scan-window"}
        ),
        _param("window_min", _int(0, 7 * 1440, 60, "scan-window: minutes either side, inclusive")),
        _param("buffer_min", _int(0, 1440, 0, "overlap: the case's visits widened by")),
        _param(
            "min_overlap_min", _int(0, 1440, 0, "overlap: minimum minutes together (15 = MoH F1)")
        ),
        _param("merge_gap_min", _int(0, 1440, 30, "repeated scans this close are one visit")),
        _param("depth", _int(1, 2, 1, "2 adds the F2 contacts of every F1 contact")),
        _param(
            "cap_at_next_scan",
            {
                "type": "boolean",
                "description": "a visit ends at the person's next scan at another premises"
                " (default: true under overlap, false under scan-window)",
            },
        ),
    ]
    page = {
        "type": "object",
        "properties": {
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "returned": {"type": "integer"},
            "total": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"]},
        },
    }
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    errors: dict[str, object] = {
        "401": {"description": "missing or unknown bearer token (not audited: no identity)"},
        "403": {"description": "the token's role may not do this (audited)", "content": error_body},
        "422": {
            "description": (
                "`invalid`: a parameter is unknown, repeated, empty, not an integer in ASCII"
                " digits, out of range, or not an ISO-8601 time with an offset, or the period"
                " is wrong; `too_large`: a JSON answer larger than"
                f" {options.max_json_rows} rows (ask for format=csv). The reason is in"
                " `detail`; audited"
            ),
            "content": error_body,
        },
        "503": {
            "description": (
                "`query_limit`: the query hit its time or memory limit"
                f" ({options.max_execution_s:g} s, {options.max_memory_bytes} bytes), named in"
                " `detail`; `query_failed`: ClickHouse failed; `audit_failed`: the audit row"
                " could not be written, so nothing is answered. Audited, but for audit_failed"
            ),
            "content": error_body,
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "scantrace tracer API",
            "version": "1",
            "description": (
                "Exposure queries over QR check-in scans. Every request with a known token"
                " leaves exactly one audit row, refused ones (403, 404, 405, 422) and failed"
                " ones (503) included, and reads of the audit log too. Periods may not be"
                f" longer than the {retention_days}-day retention. Every query runs under a"
                " time and a memory limit. JSON answers are paged from the whole answer,"
                " kept for a while; format=csv streams the whole answer: a response that"
                " ends without its final chunk was cut (a failure) and is incomplete."
                " The same server serves the tracers' workbench (HTML pages signed in with the"
                " same tokens, `/login`) and the public list of approved exposure sites."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
                "Contact": _object(CONTACT_FIELDS),
                "Visit": _object(VISIT_FIELDS),
                "Visitor": _object(VISITOR_FIELDS),
                "Page": page,
                "Trace": {
                    "type": "object",
                    "properties": {
                        "case": {"type": "string"},
                        "period": {"type": "object"},
                        "rule": {"type": "object"},
                        "visits": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Visit"},
                        },
                        "contacts": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Contact"},
                        },
                        "page": {"$ref": "#/components/schemas/Page"},
                    },
                },
                "ExposureSite": _EXPOSURE_SITE,
                "Visitors": {
                    "type": "object",
                    "properties": {
                        "premises_id": {"type": "string"},
                        "period": {"type": "object"},
                        "visitors": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Visitor"},
                        },
                        "page": {"$ref": "#/components/schemas/Page"},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/trace/{person_id}": {
                "get": {
                    "summary": "A case's visits and contacts (role tracer)",
                    "parameters": [
                        _param("person_id", {"type": "string"}, "path", True),
                        *period,
                        *rule,
                        *paging,
                    ],
                    "responses": _responses(
                        {
                            "description": "the answer (one page)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Trace"}
                                },
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        errors,
                    ),
                }
            },
            "/v1/premises/{premises_id}/visitors": {
                "get": {
                    "summary": "Everyone who scanned at a premises in the period (role tracer)",
                    "parameters": [
                        _param("premises_id", {"type": "string"}, "path", True),
                        *period,
                        *paging,
                    ],
                    "responses": _responses(
                        {
                            "description": "the answer (one page)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Visitors"}
                                },
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        errors,
                    ),
                }
            },
            "/v1/audit": {
                "get": {
                    "summary": "The audit log (role auditor)",
                    "parameters": [
                        _param(
                            "since", _string("ISO-8601 with offset", "date-time"), required=True
                        ),
                        _param("limit", _int(1, 100_000, 1000, "rows")),
                        _param(
                            "actor",
                            {
                                "type": "string",
                                "description": "only this tracer (the CLI's: `user (uid N)`)",
                            },
                        ),
                    ],
                    "responses": _responses({"description": "audit entries, oldest first"}, errors),
                }
            },
            **_exposure_site_paths(errors),
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "alive"}}}},
            "/metrics": {
                "get": {"security": [], "responses": {"200": {"description": "Prometheus"}}}
            },
            "/openapi.json": {
                "get": {"security": [], "responses": {"200": {"description": "this"}}}
            },
        },
    }


_WINDOW = {"type": "string", "format": "date-time", "description": "ISO-8601, +07:00"}
_EXPOSURE_SITE: dict[str, object] = {
    "type": "object",
    "description": "An approved exposure site: a premises and a window, never a person",
    "properties": {
        "premises_id": {"type": "string"},
        "name": {"type": "string"},
        "address": {"type": "string"},
        "district": {"type": "string"},
        "category": {"type": "string"},
        "window_start": _WINDOW,
        "window_end": _WINDOW,
        "approved_at": _WINDOW,
    },
}
_VISIT_WINDOW = {
    "type": "object",
    "required": ["premises_id", "from", "to"],
    "properties": {
        "premises_id": {"type": "string"},
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
    },
}


def _exposure_site_paths(errors: dict[str, object]) -> dict[str, object]:
    """Exposure sites: proposed by a tracer or supervisor, approved (four eyes) or rejected
    by a supervisor who did not propose, withdrawn by a supervisor; the approved ones
    public."""
    decided = {"description": 'the proposal\'s new state: `{"id", "state"}`'}
    refused = {
        "404": {"description": "no such proposal, or not approve, reject or withdraw"},
        "409": {"description": "the proposal is not in a state for this decision"},
    }
    return {
        "/v1/exposure-sites": {
            "get": {
                "summary": "The approved exposure sites (public, no token, cached)",
                "description": (
                    "Approved, not withdrawn sites whose window ended within the last weeks,"
                    " latest first. Never a person id or a case id. Cache-Control and ETag."
                ),
                "security": [],
                "responses": {
                    "200": {
                        "description": '`{"sites": [...], "read_at"}`',
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "sites": {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/ExposureSite"},
                                        },
                                        "read_at": {"type": "string", "format": "date-time"},
                                    },
                                }
                            }
                        },
                    },
                    "304": {"description": "unchanged since the ETag sent in If-None-Match"},
                },
            },
            "post": {
                "summary": "Propose exposure sites (role tracer or supervisor)",
                "description": (
                    "A case's visits in a period (`person_id`, `from`, `to`: under the default"
                    " rule), or a list of `visits`; nothing is public until a supervisor"
                    " other than the proposer approves. Audited."
                ),
                "requestBody": {
                    "required": True,
                    "description": '`{"person_id", "from", "to"}` or `{"visits": [...]}`',
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "person_id": {"type": "string"},
                                    "from": {"type": "string", "format": "date-time"},
                                    "to": {"type": "string", "format": "date-time"},
                                    "visits": {"type": "array", "items": _VISIT_WINDOW},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": {"description": '`{"id", "sites"}`: the proposal'},
                    **errors,
                },
            },
        },
        "/v1/exposure-sites/{id}/{decision}": {
            "post": {
                "summary": "Approve, reject or withdraw a proposal (role supervisor)",
                "description": (
                    "approve: a supervisor other than the proposer; reject: a supervisor;"
                    " withdraw: a supervisor (or the proposer while it is pending). Audited."
                ),
                "parameters": [
                    _param("id", {"type": "string"}, "path", True),
                    _param(
                        "decision",
                        {"type": "string", "enum": ["approve", "reject", "withdraw"]},
                        "path",
                        True,
                    ),
                ],
                "responses": {"200": decided, **refused, **errors},
            }
        },
    }
