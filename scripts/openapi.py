#!/usr/bin/env python3
"""Writes docs/openapi.json, the OpenAPI 3.1 description of the intake's routes.

Edit this file, then run `python3 scripts/openapi.py > docs/openapi.json`;
tests/openapi.rs checks that both agree and that every route is described."""
import json
err = {"$ref": "#/components/responses/Error"}
def jerr(desc): return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
def html(desc): return {"description": desc, "content": {"text/html": {"schema": {"type": "string"}}}}
sec_headers = {}
ra = {"Retry-After": {"description": "Seconds after which trying again makes sense.", "schema": {"type": "integer", "minimum": 0}}}
def with_ra(r):
    r = dict(r); r["headers"] = ra; return r
bearer = [{"maintainerToken": []}]
# Every `code` a refusal can carry (src/intake/error.rs checks this list).
REFUSAL_CODES = [
  "busy",
  "confirmation_mismatch",
  "confirmation_too_large",
  "cross_site_request",
  "duplicate_part",
  "event_conflict",
  "event_too_large",
  "file_too_large",
  "headers_too_long",
  "incomplete_multipart",
  "internal",
  "invalid_confirmation",
  "invalid_event",
  "invalid_report",
  "invalid_session_keys",
  "invalid_status",
  "malformed_multipart",
  "missing_report",
  "no_boundary",
  "no_public_url",
  "no_usable_key",
  "not_found",
  "range_not_satisfiable",
  "rate_limited",
  "stale_status",
  "status_too_large",
  "request_too_large",
  "report_too_large",
  "state_unavailable",
  "store_unavailable",
  "text_too_large",
  "timeout",
  "too_many_attachments",
  "too_many_parts",
  "too_many_uploads",
  "unauthorized",
  "unknown_part",
  "unsupported_media_type",
  "upload_interrupted",
  "upload_too_slow",
]
id_param = {"name": "id", "in": "path", "required": True, "description": "A report ID: upper-case Crockford base32 in groups of five, e.g. K7Q3M-2XDA9-TF4BC-1ZP0R.", "schema": {"type": "string"}}
part_param = {"name": "part", "in": "path", "required": True, "description": "`manifest.pgp` or an attachment part `001.pgp` … `999.pgp`.", "schema": {"type": "string"}}
form_fields = {
  "title": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": "\\S", "description": "Required: one line, at most 300 characters."},
  "affected_versions": {"type": "string"},
  "environment": {"type": "string"},
  "severity": {"type": "string", "enum": ["", "low", "medium", "high", "critical", "unknown"]},
  "cvss_vector": {"type": "string", "description": "Optional CVSS 3.0, 3.1 or 4.0 vector; validated and scored."},
  "cwe": {"type": "string", "description": "Optional comma-separated CWE-<n> list."},
  "description": {"type": "string", "minLength": 1, "pattern": "\\S", "description": "Required."},
  "impact": {"type": "string"},
  "steps_to_reproduce": {"type": "string"},
  "mitigations": {"type": "string"},
  "reporter_name": {"type": "string"},
  "reporter_email": {"type": "string"},
  "credit": {"type": "string", "enum": ["", "name", "anonymous"]},
}
report_obj = {k: ({"anyOf": [{"type": "string"}, {"type": "null"}]} if k not in ("cwe",) else {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}) for k in form_fields if k not in ("reporter_name", "reporter_email", "credit")}
report_obj["title"] = {"type": "string", "minLength": 1, "maxLength": 300, "pattern": "\\S", "description": "Required: one line, at most 300 characters."}
report_obj["description"] = {"type": "string", "minLength": 1, "pattern": "\\S", "description": "Required."}
report_obj["severity"] = {"anyOf": [{"type": "string", "enum": ["", "low", "medium", "high", "critical", "unknown"]}, {"type": "null"}]}
for k in report_obj:
    if "description" in form_fields[k]:
        report_obj[k]["description"] = form_fields[k]["description"]
SECURITY_TXT = {
    "200": {"description": "The file: Contact, Encryption, Policy, Canonical and Expires, with URLs from `public_url`; Expires never after the earliest usable key expiry.", "content": {"text/plain": {"schema": {"type": "string"}}}},
    "404": jerr("No `public_url` is configured, so no absolute URL can be given."),
}
doc = {
 "openapi": "3.1.0",
 "info": {"title": "embargo intake", "version": "1",
   "description": "The HTTP interface of an embargo intake: researchers submit vulnerability reports (sealed to the maintainers' OpenPGP certificates as they arrive), maintainers fetch the sealed ciphertext with a bearer token. Every answer carries a strict Content-Security-Policy, `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`. Errors from JSON routes are `{\"error\": {\"code\", \"message\"}}`.",
   "license": {"name": "GPL-3.0-or-later", "identifier": "GPL-3.0-or-later"}},
 "paths": {
  "/": {"get": {"summary": "The report form (works with JavaScript disabled).", "operationId": "form", "responses": {"200": html("The form.")}}},
  "/report": {"post": {"summary": "Submit the form.", "operationId": "submitForm",
     "description": "Browsers send this from the form at `/`. A request another site made is refused (403). Each field at most once; at most `max_attachments` files.",
     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["title", "description"], "properties": dict(form_fields, attachment={"description": "0..max_attachments file parts (filename in Content-Disposition); the bytes are taken as they are."})}}}},
     "responses": {"201": html("Sealed and stored: the receipt page with the report ID and the signed receipt."),
                   "400": html("Invalid field: the form again with the typed values and the errors."),
                   "403": html("Sent from another site."),
                   "408": html("The upload was slower than `min_upload_bytes_per_second` or took longer than `upload_timeout`."),
                   "413": html("Too large: a field, a file, all text together, too many files or too many parts, or text that would make a manifest larger than readers take."),
                   "415": html("Not multipart/form-data."),
                   "429": with_ra(html("Too many reports, refused attempts or uploads at once from this address; try again later.")),
                   "503": with_ra(html("No usable maintainer key, the store is unavailable, or the intake is busy."))}}},
  "/api/v1/reports": {"post": {"summary": "Submit a report with files.", "operationId": "submitReport",
     "description": "Part `report` is the input JSON; parts `attachment` are files (0..max_attachments). The answer is given only after the sealed report is complete, fsynced and renamed into place.",
     "requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": ["report"], "properties": {
          "report": {"$ref": "#/components/schemas/InputJson"},
          "attachment": {"description": "0..max_attachments file parts (filename in Content-Disposition); the bytes are taken as they are."}}},
        "encoding": {"report": {"contentType": "application/json"}}}}},
     "responses": {"201": {"description": "Sealed and stored.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
       "400": jerr("Invalid report (per-field messages in `error.fields`), a repeated or unknown part."),
       "408": jerr("Too slow: under `min_upload_bytes_per_second`, or over `upload_timeout`."),
       "403": jerr("A cross-site browser request."),
       "413": jerr("Too large: a file (`file_too_large`), too many files or parts, all text together (`text_too_large`), or text that would make a manifest larger than readers take (`report_too_large`)."),
       "415": jerr("Not multipart/form-data."),
       "429": with_ra(jerr("Rate limited: reports (`rate_limited`), refused attempts, or uploads at once from one address (`too_many_uploads`).")),
       "503": with_ra(jerr("No usable maintainer key, store unavailable, or busy."))}}},
  "/keys.asc": {"get": {"summary": "The maintainer certificates usable now, armored.", "operationId": "maintainerKeys", "responses": {
      "200": {"description": "Armored OpenPGP certificates.", "content": {"application/pgp-keys": {"schema": {"type": "string"}}}},
      "503": with_ra(jerr("No usable certificate."))}}},
  "/signing-key.asc": {"get": {"summary": "The intake signing certificate, armored.", "operationId": "signingKey", "responses": {
      "200": {"description": "Armored OpenPGP certificate.", "content": {"application/pgp-keys": {"schema": {"type": "string"}}}},
      "500": jerr("Internal fault.")}}},
  "/.well-known/security.txt": {"get": {"summary": "RFC 9116 security.txt, cleartext-signed by the intake key.", "operationId": "securityTxt", "responses": SECURITY_TXT}},
  "/security.txt": {"get": {"summary": "The same file at the legacy location.", "operationId": "securityTxtLegacy", "responses": SECURITY_TXT}},
  "/healthz": {"get": {"summary": "Whether a report can be sealed and stored now.", "operationId": "health", "responses": {
      "200": {"description": "Healthy.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
      "503": {"description": "Unavailable, with the reasons.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}},
  "/static/style.css": {"get": {"summary": "The stylesheet of the pages.", "operationId": "stylesheet", "responses": {
      "200": {"description": "CSS.", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
  "/api/v1/openapi.json": {"get": {"summary": "This document.", "operationId": "openapi", "responses": {
      "200": {"description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
  "/api/v1/policy": {"get": {"summary": "The promises this intake makes to reporters (`[policy]`), as sealed into each manifest.", "operationId": "policy", "responses": {
      "200": {"description": "The policy.", "content": {"application/json": {"schema": {"type": "object", "required": ["acknowledge_within", "status_update_within"], "properties": {
          "acknowledge_within": {"type": "string", "description": "A span like `48h`."},
          "assess_within": {"type": "string", "description": "A span, or `N business days`."},
          "status_update_within": {"type": "string"},
          "fix_within": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Severity to span."}}}}}}}}},
  "/api/v1/sealed": {"get": {"summary": "Maintainers: every complete report with its part names and sizes.", "operationId": "listSealed", "security": bearer, "responses": {
      "200": {"description": "The listing: part names and sizes, and when each case status was computed.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SealedListing"}}}},
      "401": {"$ref": "#/components/responses/Unauthorized"},
      "503": with_ra(jerr("Store unavailable."))}}},
  "/api/v1/sealed/{id}/{part}": {"get": {"summary": "Maintainers: one ciphertext part.", "operationId": "getPart", "security": bearer,
      "parameters": [id_param, part_param, {"name": "Range", "in": "header", "required": False, "description": "One range, `bytes=a-b`, `bytes=a-` or `bytes=-n`.", "schema": {"type": "string"}}],
      "responses": {
        "200": {"description": "The whole part.", "headers": {"Content-Length": {"schema": {"type": "integer"}}}, "content": {"application/pgp-encrypted": {"schema": {"type": "string", "contentMediaType": "application/pgp-encrypted"}}}},
        "206": {"description": "The requested range.", "headers": {"Content-Range": {"schema": {"type": "string"}}}, "content": {"application/pgp-encrypted": {"schema": {"type": "string", "contentMediaType": "application/pgp-encrypted"}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report or part."),
        "416": jerr("The range lies outside the part."),
        "503": with_ra(jerr("Store unavailable."))}}},
  "/api/v1/sealed/{id}/events": {
    "get": {"summary": "Maintainers: the names and sizes of a case's events.", "operationId": "listEvents", "security": bearer,
      "parameters": [id_param],
      "responses": {
        "200": {"description": "The events (possibly none).", "content": {"application/json": {"schema": {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": {"type": "object", "required": ["name", "size"], "properties": {"name": {"type": "string"}, "size": {"type": "integer", "minimum": 0}}}}}}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report."),
        "503": with_ra(jerr("The store is unavailable."))}},
    "post": {"summary": "Maintainers: store one case event's ciphertext.", "operationId": "addEvent", "security": bearer,
      "description": "The body is the event as sealed by `embargo case`: an OpenPGP message encrypted to every maintainer. The intake checks only that the report exists, the name is new, and the body is encrypted OpenPGP within the size limit; it cannot read the event. The same bytes posted again are answered 200.",
      "parameters": [id_param, {"name": "name", "in": "query", "required": True, "description": "The event's file name: its 32 hex digit event ID and `.pgp`.", "schema": {"type": "string", "pattern": "^[0-9a-f]{32}[.]pgp$"}}],
      "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
      "responses": {
        "201": {"description": "Stored, durably.", "content": {"application/json": {"schema": {"type": "object", "required": ["name", "stored"], "properties": {"name": {"type": "string"}, "stored": {"type": "boolean"}}}}}},
        "200": {"description": "Stored before with the same bytes.", "content": {"application/json": {"schema": {"type": "object", "required": ["name", "stored"], "properties": {"name": {"type": "string"}, "stored": {"type": "boolean"}}}}}},
        "400": jerr("Not an event name, or not an encrypted OpenPGP message (`invalid_event`)."),
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report."),
        "409": jerr("An event of that name exists with other contents (`event_conflict`)."),
        "413": jerr("Larger than an event may be (`event_too_large`)."),
        "503": with_ra(jerr("The store is unavailable."))}}},
  "/api/v1/sealed/{id}/events/{name}": {"get": {"summary": "Maintainers: one event's ciphertext.", "operationId": "getEvent", "security": bearer,
      "parameters": [id_param, {"name": "name", "in": "path", "required": True, "description": "An event's file name.", "schema": {"type": "string"}}],
      "responses": {
        "200": {"description": "The ciphertext.", "content": {"application/pgp-encrypted": {"schema": {"type": "string", "format": "binary"}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report or event."),
        "503": with_ra(jerr("The store is unavailable."))}}},
  "/api/v1/sealed/{id}/files": {"get": {"summary": "Maintainers: the names and sizes of the files reporters sent with follow-up messages.", "operationId": "listFiles", "security": bearer,
      "description": "Each file is an OpenPGP message encrypted to the maintainers and the reporter's reply certificate, named `<32 hex digits>.pgp`; the intake cannot read it. The signed `reporter-message` event that names a file gives its name, plaintext size and SHA-256.",
      "parameters": [id_param],
      "responses": {
        "200": {"description": "The files (possibly none).", "content": {"application/json": {"schema": {"type": "object", "required": ["files"], "properties": {"files": {"type": "array", "items": {"type": "object", "required": ["name", "size"], "properties": {"name": {"type": "string"}, "size": {"type": "integer", "minimum": 0}}}}}}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report."),
        "503": with_ra(jerr("The store is unavailable."))}}},
  "/api/v1/sealed/{id}/files/{name}": {"get": {"summary": "Maintainers: one follow-up file's ciphertext.", "operationId": "getFile", "security": bearer,
      "parameters": [id_param, {"name": "name", "in": "path", "required": True, "description": "A follow-up file's name: 32 hex digits and `.pgp`.", "schema": {"type": "string"}}, {"name": "Range", "in": "header", "required": False, "description": "One range, `bytes=a-b`, `bytes=a-` or `bytes=-n`.", "schema": {"type": "string"}}],
      "responses": {
        "200": {"description": "The whole file.", "headers": {"Content-Length": {"schema": {"type": "integer"}}}, "content": {"application/pgp-encrypted": {"schema": {"type": "string", "contentMediaType": "application/pgp-encrypted"}}}},
        "206": {"description": "The requested range.", "headers": {"Content-Range": {"schema": {"type": "string"}}}, "content": {"application/pgp-encrypted": {"schema": {"type": "string", "contentMediaType": "application/pgp-encrypted"}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report or file."),
        "416": jerr("The range lies outside the file."),
        "503": with_ra(jerr("The store is unavailable."))}}},
  "/api/v1/sealed/{id}/status": {
    "get": {"summary": "Maintainers: the case status the intake holds, as signed.", "operationId": "getCaseStatus", "security": bearer,
      "parameters": [id_param],
      "responses": {
        "200": {"description": "The signed `embargo.case-status.v1` statement.", "content": {"application/pgp-signature": {"schema": {"type": "string", "format": "binary"}}}},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report, or no case status for it."),
        "503": with_ra(jerr("The store is unavailable."))}},
    "put": {"summary": "Maintainers: send a case's signed status (state and due times).", "operationId": "putCaseStatus", "security": bearer,
      "description": "The body is an OpenPGP signed message (not encrypted) holding `embargo.case-status.v1` JSON: the case's state, the names of the events it was computed from, and when the acknowledgement, assessment and next status update are due. It must be signed by a maintainer certificate of the intake's keys directory and name every event the intake holds for the report. Retention deletes only cases whose status is `closed`; `/metrics` counts cases by state and overdue obligations from these statuses.",
      "parameters": [id_param],
      "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
      "responses": {
        "201": {"description": "Stored, durably.", "content": {"application/json": {"schema": {"type": "object", "required": ["stored"], "properties": {"stored": {"type": "boolean"}}}}}},
        "200": {"description": "Nothing changed: the stored status names the same events and is as new.", "content": {"application/json": {"schema": {"type": "object", "required": ["stored"], "properties": {"stored": {"type": "boolean"}}}}}},
        "400": jerr("Not a maintainer's signed case status for this report (`invalid_status`)."),
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report."),
        "409": jerr("The intake holds events this status was not computed from (`stale_status`)."),
        "413": jerr("Larger than a case status may be (`status_too_large`)."),
        "503": with_ra(jerr("The store is unavailable."))}}},
  "/api/v1/sealed/{id}/session-keys": {"post": {"summary": "Maintainers: share a part, event or follow-up file with a new maintainer.", "operationId": "addSessionKeys", "security": bearer,
      "description": "The body is OpenPGP public-key encrypted session-key packets (what `embargo case share` adds) and nothing else. They are inserted before the part's encrypted data, which stays byte-identical; the intake cannot read the part before or after.",
      "parameters": [id_param, {"name": "part", "in": "query", "required": True, "description": "`manifest.pgp`, `NNN.pgp`, an event's file name, or `files/NAME` for a follow-up file (the slash may be sent as `%2F`).", "schema": {"type": "string"}}],
      "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
      "responses": {
        "200": {"description": "Added, durably.", "content": {"application/json": {"schema": {"type": "object", "required": ["part", "size"], "properties": {"part": {"type": "string"}, "size": {"type": "integer", "minimum": 0}}}}}},
        "400": jerr("Not session keys, or no such part name (`invalid_session_keys`)."),
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report or part."),
        "503": with_ra(jerr("The store is unavailable."))}}},
  "/api/v1/sealed/{id}/fetched": {"post": {"summary": "Maintainers: confirm that a report was stored locally.", "operationId": "confirmFetched", "security": bearer,
      "description": "`embargo fetch` sends the SHA-256 of every stored ciphertext part once the report is complete and fsynced on the maintainer's side. Only a confirmation naming every part, each with the hash of the stored bytes, marks the report fetched for `[retention] delete_after_fetch`; nothing else counts as fetched.",
      "parameters": [id_param],
      "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["parts"], "additionalProperties": False, "properties": {
          "parts": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, "description": "Part name (`manifest.pgp`, `001.pgp`, …) to the SHA-256 of its ciphertext, in hex."}}}}}},
      "responses": {
        "200": {"description": "Confirmed (and recorded when `delete_after_fetch` is on).", "content": {"application/json": {"schema": {"type": "object", "required": ["id", "confirmed", "delete_after_fetch"], "properties": {"id": {"type": "string"}, "confirmed": {"type": "boolean"}, "delete_after_fetch": {"type": "boolean"}}}}}},
        "400": jerr("Not a confirmation."),
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "404": jerr("No such report."),
        "409": jerr("The parts or hashes do not match the stored report; nothing was marked."),
        "413": jerr("The body is too large."),
        "503": with_ra(jerr("The store or the intake's state is unavailable."))}}},
  "/metrics": {"get": {"summary": "Prometheus metrics (fixed labels only); maintainers only on this listener.", "operationId": "metrics", "security": bearer, "responses": {
      "200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
      "401": {"$ref": "#/components/responses/Unauthorized"}}}},
 },
 "components": {
  "securitySchemes": {"maintainerToken": {"type": "http", "scheme": "bearer", "description": "A token made by `embargo token new`; the intake keeps only its SHA-256 (`[maintainers] token_sha256`)."}},
  "responses": {"Unauthorized": {"description": "No or a wrong maintainer token.", "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
  "schemas": {
   "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
       "code": {"type": "string", "enum": REFUSAL_CODES, "description": "A stable machine-readable code: one per kind of refusal."},
       "message": {"type": "string", "description": "What failed and what to do."},
       "fields": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}}},
   "InputJson": {"type": "object", "required": ["report"], "additionalProperties": False, "properties": {
       "report": {"type": "object", "additionalProperties": False, "required": ["title", "description"], "properties": report_obj, "description": "The form's field names; absent and null mean empty. `title` and `description` are required to be non-empty."},
       "reporter": {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": False, "properties": {
           "name": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]}, "credit": {"anyOf": [{"type": "string", "enum": ["", "name", "anonymous"]}, {"type": "null"}], "description": "`name` (then `name` is required) or `anonymous`."}}}]}}},
   "Accepted": {"type": "object", "required": ["id", "received_at", "attachments", "receipt", "recipients"], "properties": {
       "id": {"type": "string"}, "received_at": {"type": "string", "format": "date-time"},
       "recipients": {"type": "array", "items": {"type": "string"}, "description": "Fingerprints of the maintainer certificates the report was sealed to."},
       "attachments": {"type": "array", "items": {"type": "object", "required": ["name", "size", "sha256"], "properties": {"name": {"type": "string"}, "size": {"type": "integer", "minimum": 0}, "sha256": {"type": "string"}}}},
       "receipt": {"type": "string", "description": "Cleartext-signed text by the intake signing key: ID, time received, SHA-256 of every sealed part, recipient fingerprints."}}},
   "Health": {"type": "object", "required": ["status", "problems"], "properties": {
       "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"], "description": "`degraded`: reports are accepted but sealed to fewer maintainers than configured (see `degraded` and `unusable_keys`)."},
       "usable_keys": {"type": "integer", "minimum": 0}, "maintainer_keys": {"type": "integer", "minimum": 0},
       "unusable_keys": {"type": "array", "items": {"type": "object", "properties": {"fingerprint": {"type": "string"}, "reason": {"type": "string"}}}},
       "degraded": {"type": "array", "items": {"type": "string"}},
       "problems": {"type": "array", "items": {"type": "string"}}, "key_alerts": {"type": "array"}}},
   "SealedListing": {"type": "object", "required": ["reports"], "properties": {"confirm_fetched": {"type": "boolean", "description": "Whether this intake deletes reports once a fetch is confirmed."}, "reports": {"type": "array", "items": {"type": "object", "required": ["id", "parts"], "properties": {
       "id": {"type": "string"}, "parts": {"type": "array", "items": {"type": "object", "required": ["name", "size"], "properties": {"name": {"type": "string"}, "size": {"type": "integer", "minimum": 0}}}},
       "status_at": {"type": "string", "description": "When the case status the intake holds was computed (RFC 3339); absent when it holds none."}}}}}},
  }}}


def reporter_channel(d):
    """The reporter channel: the status page, its API, reply codes in the answer, new-reply notices."""
    E={"application/json":{"schema":{"$ref":"#/components/schemas/Error"}}}
    H={"text/html":{"schema":{"type":"string"}}}
    def err(desc, html=False): return {"description":desc,"content":H if html else E}
    retry={"Retry-After":{"description":"Seconds after which trying again makes sense.","schema":{"type":"integer","minimum":0}}}
    def r429(html=False):
        x=err("Over the reply-code attempts one address may make (`too_many_codes`: 20 in 10 minutes) or busy.",html); x["headers"]=retry; return x
    codes=["invalid_code","unknown_code","too_many_codes","empty_message","follow_up_order","invalid_request","no_smtp","mail_not_sent"]
    enum=d['components']['schemas']['Error']['properties']['error']['properties']['code']['enum']
    for c in codes:
        if c not in enum: enum.append(c)
    acc=d['components']['schemas']['Accepted']['properties']
    acc['reply_code']={"type":["string","null"],"description":"The reporter's reply code, shown only in this answer (never stored by the intake): 28 Crockford base32 characters in seven groups of four. With it `POST /api/v1/status` returns the case's timeline. `null` only from an intake without a reply desk."}
    d['components']['schemas']['Accepted']['properties']['receipt']['description']="Cleartext-signed text by the intake signing key: ID, time received, SHA-256 of every sealed part, the size and SHA-256 of the report text (the description) and of every attachment's plaintext, recipient fingerprints. It never holds the reply code."
    files={"type":"array","items":{"type":"object","required":["name","size","sha256"],"properties":{"name":{"type":"string"},"size":{"type":"integer","minimum":0},"sha256":{"type":"string"}}}}
    d['components']['schemas']['Timeline']={"type":"object","required":["report","stage","open","events"],"properties":{
     "report":{"type":"string"},
     "stage":{"type":"string","enum":["new","acknowledged","assessed","fixing","fixed","closed"]},
     "resolution":{"type":["string","null"]},
     "open":{"type":"array","description":"Promises still open: acknowledge, status_update, fix.","items":{"type":"object","required":["what","due","overdue"],"properties":{"what":{"type":"string"},"due":{"type":"string","format":"date-time"},"overdue":{"type":"boolean"}}}},
     "events":{"type":"array","items":{"type":"object","required":["event","at","kind","from_reporter"],"properties":{
       "event":{"type":"string"},"at":{"type":"string"},"kind":{"type":"string"},"from_reporter":{"type":"boolean"},
       "message":{"type":["string","null"]},"fix":{},"advisory":{},"resolution":{"type":["string","null"]},"files":files}}},
     "receipt":{"type":["string","null"],"description":"The signed receipt given at intake."}}}
    code_body={"type":"object","required":["code"],"additionalProperties":False,"properties":{"code":{"type":"string","maxLength":200,"description":"The reply code as given (case, spaces and dashes do not matter)."}}}
    paths=d['paths']
    paths['/status']={
     "get":{"summary":"The status page: a form for the reply code (no JavaScript).","operationId":"statusForm","responses":{"200":{"description":"The form.","content":H}}},
     "post":{"summary":"The reporter's case page for a reply code.","operationId":"statusPage",
      "description":"Form field `code`. The intake derives the reply certificate from the code (Argon2id) for this request only, opens the events sealed to it and shows the timeline, the promises still open and a form to answer. A wrong code and an unknown one get the same answer.",
      "requestBody":{"required":True,"content":{"application/x-www-form-urlencoded":{"schema":code_body}}},
      "responses":{"200":{"description":"The case page.","content":H},"400":err("Not a reply code (`invalid_code`: length, characters, or a typo caught by the check character).",True),"403":err("A cross-site browser request.",True),"404":err("No report answers to this code (`unknown_code`).",True),"413":err("The body is over 4 KiB.",True),"429":r429(True)}}}
    msg_parts={"type":"object","properties":{"attachment":{"description":"0..max_attachments files, after the code and the message."}}}
    paths['/status/messages']={"post":{"summary":"The reporter answers from the case page.","operationId":"statusMessagePage",
     "description":"Parts, in this order: `code`, `message`, then `attachment` files (same limits and streaming as a report). Sealed as a `reporter-message` event to the maintainers and the reply certificate, signed by the intake key.",
     "requestBody":{"required":True,"content":{"multipart/form-data":{"schema":msg_parts}}},
     "responses":{"201":{"description":"Stored: the case page again, with the answer.","content":H},"400":err("Not a reply code, parts out of order, no message, or a message no event can hold (`invalid_request`: a NUL byte, or so many control characters that it outgrows its event once escaped).",True),"403":err("A cross-site browser request.",True),"404":err("No report answers to this code.",True),"408":err("Too slow.",True),"413":err("A file or the whole body is too large.",True),"415":err("Not multipart/form-data.",True),"429":r429(True),"503":err("No usable maintainer key, or busy.",True)}}}
    paths['/api/v1/status']={"post":{"summary":"The reporter's timeline as JSON, for a reply code.","operationId":"reporterStatus",
     "description":"The code goes in the body, never in the URL. Wrong and unknown codes get the same status and the same body.",
     "requestBody":{"required":True,"content":{"application/json":{"schema":code_body}}},
     "responses":{"200":{"description":"The timeline.","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Timeline"}}}},"400":err("Not a reply code, or not this JSON."),"403":err("A cross-site browser request."),"404":err("No report answers to this code (`unknown_code`)."),"413":err("The body is over 4 KiB."),"429":r429()}}}
    paths['/api/v1/status/messages']={"post":{"summary":"A reporter's follow-up: a message and files.","operationId":"reporterMessage",
     "description":"Part `followup` first (JSON `{\"code\", \"message\"}`), then `attachment` parts.",
     "requestBody":{"required":True,"content":{"multipart/form-data":{"schema":{"type":"object","required":["followup"],"properties":{"followup":{"type":"object","required":["code","message"],"properties":{"code":{"type":"string"},"message":{"type":"string"}}},"attachment":{"description":"0..max_attachments files."}}},"encoding":{"followup":{"contentType":"application/json"}}}}},
     "responses":{"201":{"description":"Sealed and stored.","content":{"application/json":{"schema":{"type":"object","required":["event","at","files"],"properties":{"event":{"type":"string"},"at":{"type":"string"},"files":files}}}}},
      "400":err("Not a reply code, parts out of order, not the JSON, no message, or a message no event can hold (`invalid_request`: a NUL byte)."),"403":err("A cross-site browser request."),"404":err("No report answers to this code."),"408":err("Too slow."),"413":err("A file or the whole body is too large."),"415":err("Not multipart/form-data."),"429":r429(),"503":err("No usable maintainer key, or busy.")}}}
    idp={"name":"id","in":"path","required":True,"description":"A report ID.","schema":{"type":"string"}}
    paths['/api/v1/sealed/{id}/reporter-mail']={"post":{"summary":"Maintainers: tell the reporter there is something new.","operationId":"mailReporter","security":[{"maintainerToken":[]}],
     "description":"Sends a content-free \"there is a new reply, see the status page\" mail through `[smtp]` to the address given here (a maintainer's command takes it from the decrypted report). The address is used for this one mail and never stored. The same per-address and hourly limits as acknowledgements apply.",
     "parameters":[idp],
     "requestBody":{"required":True,"content":{"application/json":{"schema":{"type":"object","required":["to"],"additionalProperties":False,"properties":{"to":{"type":"string"}}}}}},
     "responses":{"202":{"description":"Sent.","content":{"application/json":{"schema":{"type":"object","properties":{"sent":{"type":"boolean"}}}}}},"400":err("Not this JSON, or not an address."),"401":err("No valid maintainer token."),"404":err("No such report."),"409":err("The intake has no `[smtp]` (`no_smtp`)."),"413":err("The body is over 1 KiB."),"503":err("Not sent now: a limit, or the SMTP server (`mail_not_sent`).")}}}
    rep=d['components']['schemas']['InputJson']['properties']['reporter']['anyOf'][1]['properties']
    rep['openpgp_key']={"type":["string","null"],"description":"The reporter's own OpenPGP public key, armored (optional): sealed into the report so maintainers can also answer by encrypted mail."}

reporter_channel(doc)
print(json.dumps(doc, indent=2))
