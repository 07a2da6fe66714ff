"""Console pages of tenancy, one module per group; each lists its own routes and
apps/tenancy/page_urls.py mounts them: organizations (overview, members, teams, invitations,
audit), the invitation link, personal API tokens, and a project's environments, settings and
activity. Every action calls the same service as the API, validated by the API's serializer."""
