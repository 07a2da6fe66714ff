"""Page routes of tenancy (mounted at / by console/urls.py); each pages module lists its own.
The layout links to the names home, org, account-tokens, project-environments, project-activity and
project-settings."""

from django.urls import URLPattern

from apps.tenancy.pages import audit, environments, home, invitations, orgs, project_settings, teams, tokens

urlpatterns: list[URLPattern] = [
    *home.urlpatterns,
    *orgs.urlpatterns,
    *teams.urlpatterns,
    *invitations.urlpatterns,
    *audit.urlpatterns,
    *tokens.urlpatterns,
    *environments.urlpatterns,
    *project_settings.urlpatterns,
]
