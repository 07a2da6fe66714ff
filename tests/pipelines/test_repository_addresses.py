"""Repository URLs that lead to this server or its network are refused (request forgery): when
the repository is connected (400 naming the rule) and again before every fetch, after DNS,
unless the operator setting STRATUS_REPOSITORY_ALLOW_LOCAL allows them; the fetch is pinned to
the addresses that were checked.

A fake resolver (``remote.getaddrinfo`` replaced for a few ``.test`` names only) stands in for
a DNS server whose answer changes between the check at connect time and the fetch (DNS
rebinding): such a server cannot run here. Everything else is real: git, a smart-HTTP git
server, sshd, and the host's own network addresses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.core.errors import DomainError
from apps.pipelines import mirror, remote, run_services, runner
from apps.pipelines.models import Repository, Run
from tests.pipelines.conftest import GitRepo, make_repository
from tests.pipelines.git_http import GitHttpServer, RedirectServer
from tests.prerequisites import needs_sshd

PUBLIC = "93.184.216.34"  # what a public name resolves to at connect time (never connected to here)
RULE = "STRATUS_REPOSITORY_ALLOW_LOCAL allows them"


@pytest.fixture
def refusing(settings: Any) -> None:
    """The default: local repositories and addresses are refused."""
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = False


class FakeResolver:
    """Answers for the names in ``answers`` (a name → its addresses, changeable mid-test),
    and asks the real resolver for every other name."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked: list[str] = []
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        self.asked.append(name)
        if not self.answers[name]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
            for a in self.answers[name]
        ]


@pytest.fixture
def dns(monkeypatch: Any) -> FakeResolver:
    fake = FakeResolver()
    monkeypatch.setattr(remote, "getaddrinfo", fake)
    return fake


@pytest.fixture
def live_world(transactional_db: None) -> Any:
    """The world, committed: a run executes as the worker does (its own connection handling)."""
    from tests.conftest import build_world

    return build_world()


def fresh(repository: Repository) -> Repository:
    """No mirror left at this repository's path by an earlier test (ids are reused)."""
    import shutil

    shutil.rmtree(mirror.mirror_path(repository), ignore_errors=True)
    return repository


@pytest.fixture
def git_server(hello_repo: GitRepo) -> Iterator[GitHttpServer]:
    server = GitHttpServer(hello_repo.origin.parent, user="x-access-token", password="tok")
    yield server
    server.close()


def put_url(client: Any, world: Any, url: str) -> Any:
    return client.put(f"/api/v1/projects/{world.web.pk}/repository", {"url": url}, format="json")


def token_repository(world: Any, url: str) -> Repository:
    from apps.core import crypto

    return make_repository(world.web, url, credentials_kind="token", credentials_ciphertext=crypto.encrypt("tok"))


def own_public_address() -> str | None:
    """An address of this host outside the blocked ranges (the source address of a route to the
    outside), or None when every address of this host is in them anyway."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("198.51.100.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    from apps.core.isolation.egress import blocked

    return None if blocked(address) else address


# --- at connect time ------------------------------------------------------------------------------

REFUSED = [
    ("http://127.0.0.1/alpha/web.git", "'127.0.0.1' is a loopback address"),
    ("http://localhost/alpha/web.git", "'localhost' resolves to 127.0.0.1, a loopback address"),
    ("http://[::1]/alpha/web.git", "'::1' is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "'169.254.169.254' is a link-local address"),
    ("http://10.0.0.5/alpha/web.git", "'10.0.0.5' is a private address"),
    ("https://192.168.1.20/alpha/web.git", "'192.168.1.20' is a private address"),
    ("https://100.64.0.7/alpha/web.git", "'100.64.0.7' is a shared (CGNAT) address"),
    ("http://0.0.0.0/alpha/web.git", "'0.0.0.0' is an unspecified address"),
    ("http://[::]/alpha/web.git", "'::' is an unspecified address"),
    ("http://224.0.0.1/alpha/web.git", "'224.0.0.1' is a multicast address"),
    ("http://[fe80::1]/alpha/web.git", "'fe80::1' is a link-local address"),
    ("http://[fd00:ec2::254]/latest", "'fd00:ec2::254' is a private address"),
    ("http://[::ffff:127.0.0.1]/alpha/web.git", "'::ffff:127.0.0.1' is a loopback address"),
    ("http://2130706433/alpha/web.git", "'2130706433' resolves to 127.0.0.1, a loopback address"),  # 127.0.0.1
    ("ssh://git@127.0.0.1:2222/alpha/web.git", "'127.0.0.1' is a loopback address"),
    ("git@localhost:alpha/web.git", "'localhost' resolves to 127.0.0.1, a loopback address"),
    ("git://10.1.2.3/alpha/web.git", "'10.1.2.3' is a private address"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED, ids=[u for u, _ in REFUSED])
def test_urls_leading_to_this_server_or_its_network_are_refused(
    refusing: None, world: Any, client_for: Any, url: str, why: str
) -> None:
    # When an owner connects a repository whose URL leads to a local or private address
    response = put_url(client_for(world.alice), world, url)

    # Then 400 in the envelope, naming the address, its kind and the rule (and the setting)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "address_not_allowed"
    assert error["message"] == f"The repository host {why}: {remote.RULE}."
    assert error["fields"] == {"url": [error["message"]]}
    # And nothing was stored
    assert not Repository.objects.exists()


@pytest.mark.parametrize("url", ["file:///srv/git/web.git", "/srv/git/web.git"])
def test_local_paths_are_refused(refusing: None, world: Any, client_for: Any, url: str) -> None:
    response = put_url(client_for(world.alice), world, url)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "address_not_allowed"
    assert error["message"] == (
        "Local repository paths (file:// or /path) are not allowed on this server: a clone from a path reads "
        "the server's own files (STRATUS_REPOSITORY_ALLOW_LOCAL allows them)."
    )
    assert not Repository.objects.exists()


def test_a_name_resolving_to_a_private_address_is_refused(
    refusing: None, dns: FakeResolver, world: Any, client_for: Any
) -> None:
    dns.answers["git.corp.test"] = [PUBLIC, "10.20.30.40"]  # one private answer among them is enough
    response = put_url(client_for(world.alice), world, "https://git.corp.test/alpha/web.git")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        "The repository host 'git.corp.test' resolves to 10.20.30.40, a private address: "
    )


def test_an_address_of_this_server_outside_the_private_ranges_is_refused(
    refusing: None, world: Any, client_for: Any, hello_repo: GitRepo, settings: Any
) -> None:
    # Given a git server listening on one of this host's own addresses that no range covers
    # (the host's public address: what reaches every service bound to 0.0.0.0)
    own = own_public_address()
    if own is None:
        pytest.skip("every address of this host is in a blocked range")
    server = GitHttpServer(hello_repo.origin.parent, user="x-access-token", password="tok", host=own)
    try:
        url = server.url("origin.git")
        # When a repository points at it: refused, naming the rule
        response = put_url(client_for(world.alice), world, url)
        assert response.status_code == 400, response.content
        assert response.json()["error"]["message"] == (
            f"The repository host '{own}' is an address of this server: {remote.RULE}."
        )
        assert server.requests == 0
        # And with the operator's setting on, the same URL is a git server that answers
        settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True
        assert put_url(client_for(world.alice), world, url).status_code == 201
        repository = Repository.objects.get()
        Repository.objects.filter(pk=repository.pk).update(credentials_kind="token")
        from apps.core import crypto

        Repository.objects.filter(pk=repository.pk).update(credentials_ciphertext=crypto.encrypt("tok"))
        repository.refresh_from_db()
        mirror.mirror_fetch(repository)
        assert mirror.has_commit(repository, hello_repo.git("rev-parse", "HEAD"))
    finally:
        server.close()


@pytest.mark.parametrize(
    "url",
    [u for u, _ in REFUSED] + ["file:///srv/git/web.git", "/srv/git/web.git"],
)
def test_the_operator_setting_allows_them(world: Any, client_for: Any, settings: Any, url: str) -> None:
    settings.STRATUS_REPOSITORY_ALLOW_LOCAL = True
    response = put_url(client_for(world.alice), world, url)
    assert response.status_code == 201, response.content
    assert Repository.objects.get().url == url


def test_public_and_unresolvable_names_are_accepted_at_connect_time(
    refusing: None, dns: FakeResolver, world: Any, client_for: Any
) -> None:
    # A public answer passes; a name that does not resolve (yet) has nothing to check: it is
    # checked again, and refused while it does not resolve, before each fetch.
    dns.answers["git.public.test"] = [PUBLIC, "2606:2800:220:1::1"]
    dns.answers["git.later.test"] = []
    client = client_for(world.alice)
    assert put_url(client, world, "https://git.public.test/alpha/web.git").status_code == 201
    assert put_url(client, world, "git@git.later.test:alpha/web.git").status_code == 200


# --- at fetch time ----------------------------------------------------------------------------------


def test_a_name_that_turns_private_after_connect_is_refused_at_fetch_time(
    refusing: None, dns: FakeResolver, live_world: Any, client_for: Any, hello_repo: GitRepo, git_server: GitHttpServer
) -> None:
    # Given a repository connected while its name resolved to a public address
    dns.answers["git.rebind.test"] = [PUBLIC]
    url = git_server.url("origin.git", host="git.rebind.test")
    assert put_url(client_for(live_world.alice), live_world, url).status_code == 201
    repository = fresh(Repository.objects.get())

    # When its DNS answer changes to loopback, where a real git server listens (rebinding)
    dns.answers["git.rebind.test"] = ["127.0.0.1"]

    # Then the fetch is refused before git runs: the server saw nothing, no mirror was made
    with pytest.raises(DomainError) as refused:
        mirror.mirror_fetch(repository)
    assert refused.value.code == "address_not_allowed"
    assert refused.value.message == (
        f"Fetching {url} refused: The repository host 'git.rebind.test' resolves to 127.0.0.1, "
        f"a loopback address: {remote.RULE}."
    )
    assert git_server.requests == 0
    assert not mirror.mirror_path(repository).exists()
    assert dns.asked[-1] == "git.rebind.test"  # resolved again at fetch time

    # And a run of a push fails with that reason, having deployed nothing
    run = run_services.run_for_push(
        repository=repository,
        ref="refs/heads/main",
        commit_sha=hello_repo.git("rev-parse", "HEAD"),
        commit_message="m",
        author="a",
        pusher="p",
    )
    assert runner.run_execute(run.pk) == Run.State.FAILED
    run.refresh_from_db()
    assert run.reason == refused.value.message
    assert git_server.requests == 0


def test_a_name_that_stops_resolving_is_refused_at_fetch_time(refusing: None, dns: FakeResolver, world: Any) -> None:
    dns.answers["git.gone.test"] = []
    repository = make_repository(world.web, "https://git.gone.test/alpha/web.git")
    with pytest.raises(DomainError) as refused:
        mirror.mirror_fetch(repository)
    assert refused.value.code == "fetch_failed"
    assert refused.value.message == (
        "Fetching https://git.gone.test/alpha/web.git refused: The repository host 'git.gone.test' does not "
        "resolve: nothing to check, so nothing is fetched."
    )


def test_a_local_path_stored_before_is_refused_at_fetch_time(refusing: None, world: Any, hello_repo: GitRepo) -> None:
    # A repository saved while the setting was on (or written around the API) is not fetched
    # once it is off.
    repository = fresh(make_repository(world.web, str(hello_repo.origin)))
    with pytest.raises(DomainError) as refused:
        mirror.mirror_fetch(repository)
    assert refused.value.code == "address_not_allowed"
    assert "Local repository paths (file:// or /path) are not allowed on this server" in refused.value.message
    assert not mirror.mirror_path(repository).exists()


def test_git_itself_refuses_the_file_transport_when_local_repositories_are_not_allowed(
    refusing: None, world: Any, hello_repo: GitRepo, monkeypatch: Any
) -> None:
    # A second wall behind the check: were it bypassed, git is not allowed the file transport
    # (GIT_ALLOW_PROTOCOL), so it still reads nothing of the server's files.
    monkeypatch.setattr(remote, "check", lambda url, at_fetch: remote.Plan(remote.Remote("file", "", None), ()))
    repository = make_repository(world.web, f"file://{hello_repo.origin}")
    with pytest.raises(DomainError) as failed:
        mirror.mirror_fetch(repository)
    assert failed.value.code == "fetch_failed"
    assert "transport 'file' not allowed" in failed.value.message


def test_an_address_literal_on_loopback_is_refused_at_fetch_time(
    refusing: None, world: Any, git_server: GitHttpServer
) -> None:
    repository = token_repository(world, git_server.url("origin.git"))
    with pytest.raises(DomainError) as refused:
        mirror.mirror_fetch(repository)
    assert refused.value.code == "address_not_allowed"
    assert git_server.requests == 0


# --- pinning: git connects to the addresses that were checked -------------------------------------


def test_https_fetches_are_pinned_to_the_checked_address(
    dns: FakeResolver, world: Any, hello_repo: GitRepo, git_server: GitHttpServer
) -> None:
    # Given a name only this process's resolver knows (git's own lookup would fail), allowed
    # to lead to loopback by the setting (on in these tests)
    dns.answers["git.pinned.test"] = ["127.0.0.1"]
    repository = token_repository(world, git_server.url("origin.git", host="git.pinned.test"))

    # When the mirror fetches: git connects to the address checked here (libcurl's resolve
    # list), not to its own answer
    mirror.mirror_fetch(repository)

    assert mirror.has_commit(repository, hello_repo.git("rev-parse", "HEAD"))
    assert git_server.requests > 0 and dns.asked == ["git.pinned.test"]
    # And a second fetch into the existing mirror is pinned too
    new = hello_repo.commit("second", {"README": "x"})
    hello_repo.push()
    mirror.mirror_fetch(repository)
    assert mirror.resolve_commit(repository, "refs/heads/main")["sha"] == new


@needs_sshd
def test_ssh_fetches_are_pinned_to_the_checked_address(
    dns: FakeResolver, world: Any, hello_repo: GitRepo, tmp_path: Path
) -> None:
    import subprocess

    from apps.core import crypto
    from tests.pipelines.git_http import SshServer

    key = tmp_path / "deploy"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)  # noqa: S607
    server = SshServer(tmp_path / "sshd", authorized_key=(tmp_path / "deploy.pub").read_text())
    try:
        dns.answers["git.pinned.test"] = ["127.0.0.1"]
        url = f"ssh://{server.user}@git.pinned.test:{server.port}{hello_repo.origin}"
        repository = make_repository(
            world.web, url, credentials_kind="ssh_key", credentials_ciphertext=crypto.encrypt(key.read_text())
        )
        mirror.mirror_fetch(repository)
        assert mirror.has_commit(repository, hello_repo.git("rev-parse", "HEAD"))
        # The host key is known under the name, not the address it was pinned to
        known = str(mirror.pipelines_dir() / "known_hosts")
        found = subprocess.run(["ssh-keygen", "-F", "git.pinned.test", "-f", known], capture_output=True)  # noqa: S607
        assert found.returncode == 0, found.stdout
    finally:
        server.close()


def test_redirects_are_not_followed(world: Any, git_server: GitHttpServer) -> None:
    # A checked host answering "moved" to another URL would lead git to a host nobody checked
    redirect = RedirectServer(git_server.url(""))
    try:
        repository = token_repository(world, redirect.url("origin.git"))
        with pytest.raises(DomainError) as failed:
            mirror.mirror_fetch(repository)
        assert failed.value.code == "fetch_failed"
        assert redirect.requests == 1
        assert git_server.requests == 0
    finally:
        redirect.close()
