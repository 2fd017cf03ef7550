"""Bearer JWT authentication: the user named by `sub`, looked up in the database on every request.

The service checks that the user exists and is active on every request (in the same database call
as the work), so the peer does too: nothing about the token or the user is cached here.
"""
import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http import JsonResponse

PUBLIC_PATHS = frozenset({"/healthz"})


def _refuse(status, code, detail):
    return JsonResponse({"code": code, "detail": detail}, status=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


class JWTAuthenticationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.users = get_user_model().objects

    def __call__(self, request):
        request.user = AnonymousUser()
        if request.path in PUBLIC_PATHS:
            return self.get_response(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _refuse(401, "missing_token", "An Authorization: Bearer token is required.")
        try:
            claims = jwt.decode(token, settings.JWT_SECRET, algorithms=settings.JWT_ALGORITHMS,
                                options={"require": ["exp", "sub"]})
        except jwt.InvalidTokenError:
            return _refuse(401, "invalid_token", "The token is invalid or expired.")
        try:
            user = self.users.get(username=claims["sub"])
        except self.users.model.DoesNotExist:
            return _refuse(401, "unknown_user", "The token's user does not exist.")
        if not user.is_active:
            return _refuse(403, "user_inactive", "The user is inactive.")
        request.user = user
        return self.get_response(request)
