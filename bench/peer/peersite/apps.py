from django.apps import AppConfig


class PeerSiteConfig(AppConfig):
    name = "peersite"
    default_auto_field = "django.db.models.AutoField"
