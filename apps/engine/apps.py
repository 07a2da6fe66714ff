from django.apps import AppConfig


class EngineConfig(AppConfig):
    name = "apps.engine"
    label = "engine"
    verbose_name = "Local execution engine and gateway"

    def ready(self) -> None:
        from apps.core.health import register_check, register_report
        from apps.engine import host
        from apps.engine.remote import engine_readiness
        from apps.functions.routes import routes_changed
        from apps.tenancy.announcements import environment_changed, tokens_revoked

        register_report("isolation", host.isolation_report)
        register_check("engine", engine_readiness)  # a web process whose engine is the supervisor
        # The control plane announces; the engine listens (it is never called from below).
        routes_changed.subscribe(host.routes_changed)
        environment_changed.subscribe(host.environment_changed)
        tokens_revoked.subscribe(host.tokens_changed)
