"""`relay report`'s default end, "now", includes the current second."""

from __future__ import annotations

import json

import pytest
from relay_core import NoLicensesAvailableError

from .conftest import Cli


def test_a_claim_refused_this_second_is_in_a_report_ending_now(cli: Cli) -> None:
    """At a minute's first second, a 410 of that second is counted (not cut off by `until`)."""
    path, key = cli.license("only")
    args = ("add", "--file", path, "--key", key, "--public-key", cli.writer.public_key)
    assert cli(*args, "--pool", "prod").code == 0
    relay = cli.relay
    relay.claim("holder", "prod")
    cli.clock.set("2025-12-10T00:05:00Z")
    with pytest.raises(NoLicensesAvailableError):
        relay.claim("late", "prod")
    assert relay.flush_denials() == 1
    run = cli("report", "--json", "--since", "1h", "--pool", "prod")
    assert run.code == 0, run.err
    (usage,) = json.loads(run.out)
    assert (usage["denials"], usage["leases_granted"]) == (1, 1)
