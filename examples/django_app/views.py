"""Views of the example: visit, sign in (identify), upgrade (signed-in user), sign out (reset).

They use the module-level API: ``settings.SANKOFA`` made the module-level client.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import sankofa_sdk

# A stand-in for the app's users: email -> (user id, name).
USERS = {
    "ada@example.com": ("user_42", "Ada Lovelace"),
    "grace@example.com": ("user_43", "Grace Hopper"),
}


def _me() -> JsonResponse:
    client = sankofa_sdk.get_client()
    return JsonResponse({"distinct_id": client.distinct_id if client else None})


@require_GET
def pricing(request: HttpRequest) -> JsonResponse:
    sankofa_sdk.track("Viewed Pricing", {"plan": request.GET.get("plan", "pro")})
    return _me()


@csrf_exempt
@require_POST
def login(request: HttpRequest) -> JsonResponse:
    email = json.loads(request.body or b"{}").get("email", "")
    found = USERS.get(email)
    if found is None:
        return JsonResponse({"error": "unknown user"}, status=401)
    user_id, name = found
    request.session["user_id"] = user_id
    # Stitches the browser's anonymous id (from the cookie) to the user, then sets traits.
    sankofa_sdk.identify(user_id, {"email": email, "name": name})
    sankofa_sdk.track("Signed In")
    return _me()


@csrf_exempt
@require_POST
def upgrade(request: HttpRequest) -> JsonResponse:
    user_id = request.session.get("user_id")
    if user_id is None:
        return JsonResponse({"error": "sign in first"}, status=401)
    plan = json.loads(request.body or b"{}").get("plan", "pro")
    # A signed-in request names its user: nothing is aliased again.
    sankofa_sdk.track("Plan Upgraded", {"to": plan}, distinct_id=user_id)
    sankofa_sdk.people_set({"plan": plan}, distinct_id=user_id)
    return JsonResponse({"distinct_id": user_id})


@csrf_exempt
@require_POST
def logout(request: HttpRequest) -> JsonResponse:
    user_id = request.session.pop("user_id", None)
    if user_id is not None:
        sankofa_sdk.track("Signed Out", distinct_id=user_id)
    sankofa_sdk.reset()  # the rest of this request is a new anonymous visitor
    sankofa_sdk.track("Viewed Home")
    return _me()


async def status(request: HttpRequest) -> JsonResponse:
    """An async view: the calls only enqueue, so they are safe on the event loop."""
    sankofa_sdk.track("Checked Status")
    return _me()
