#!/usr/bin/env python3
"""Signs and validates webhook requests with Twilio's official helper library (PyPI `twilio`).

Used by tests/api/signature_interop.rs to hold `ivr::carrier::signature` to the library's behaviour.

stdin: a JSON list of cases:

    {"token": "...", "url": "...", "params": [["name", "value"], ...],
     "checks": [CHECK, ...]}

A CHECK asks what `RequestValidator(token).validate()` says about one request. Every field is
optional and defaults to the case's own:

    {"url": "...",            # the URL the server validates with
     "params": [[k, v], ...], # the form parameters the server received
     "body": "...",           # instead of params: a raw (JSON) body, passed as a string
     "signature": "...",      # the X-Twilio-Signature received; by default the library's
                              # signature over sign_url/sign_params with sign_token
     "sign_url": "...", "sign_params": [[k, v], ...], "sign_token": "..."}

stdout: a JSON list, one entry per case:

    {"signature": compute_signature(url, params),
     "checks": [{"signature": "...", "valid": true | false | null, "error": "..." | null}]}

`valid` is null when validate() raised (for example on a port that is not a number).
"""

import json
import sys

from twilio.request_validator import RequestValidator


class MultiParams:
    """Form parameters with repeated names, as a web framework hands them over.

    RequestValidator iterates the names and asks `getall(name)` for the values (Flask/aiohttp
    MultiDict; `getlist` for Django's QueryDict); a plain dict can hold only one value per name.
    """

    def __init__(self, pairs):
        self._pairs = [(k, v) for k, v in pairs]

    def __iter__(self):
        return iter(dict.fromkeys(k for k, _ in self._pairs))

    def __len__(self):
        return len(self._pairs)

    def getall(self, name):
        return [v for k, v in self._pairs if k == name]


def to_params(pairs):
    """A plain dict, as most callers pass; MultiParams when a name repeats."""
    names = [k for k, _ in pairs]
    if len(names) == len(set(names)):
        return {k: v for k, v in pairs}
    return MultiParams(pairs)


def run_check(case, check):
    token = case["token"]
    signature = check.get("signature")
    if signature is None:
        signer = RequestValidator(check.get("sign_token", token))
        signature = signer.compute_signature(
            check.get("sign_url", case["url"]),
            to_params(check.get("sign_params", case["params"])),
        )
    url = check.get("url", case["url"])
    if "body" in check:
        received = check["body"]
    else:
        received = to_params(check.get("params", case["params"]))
    try:
        valid = RequestValidator(token).validate(url, received, signature)
        error = None
    except Exception as exc:  # the verdict is "raised", whatever the exception
        valid = None
        error = f"{type(exc).__name__}: {exc}"
    return {"signature": signature, "valid": valid, "error": error}


def main():
    cases = json.load(sys.stdin)
    out = []
    for case in cases:
        validator = RequestValidator(case["token"])
        out.append(
            {
                "signature": validator.compute_signature(case["url"], to_params(case["params"])),
                "checks": [run_check(case, check) for check in case.get("checks", [])],
            }
        )
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
