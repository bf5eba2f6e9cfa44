"""The economic simulator: Monte Carlo agrees with the closed forms, the PoSP condition, slash routing, params."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from veriml.cli import app
from veriml.sim import economics as e
from veriml.sim.params import choose, smallest_n, smallest_p

R13 = 1 / 3


PAIRS = [(s, a) for s in e.SCHEMES for a in e.ADVERSARIES if e.applicable(s, a)]


@pytest.mark.parametrize("scheme, adversary", PAIRS)
@pytest.mark.parametrize("r", [0.0, 0.2, R13])
def test_monte_carlo_mean_within_interval_of_closed_form(scheme, adversary, r):
    # audit_p = 0.3 so audits, collusion and arbitration all occur often enough to be sampled.
    m = e.Market(collusion=r, audit_p=0.3, audit_k=2, stake=0.01)
    est = e.simulate(scheme, adversary, m, jobs=e.MIN_JOBS, seed=7)
    assert est.jobs == e.MIN_JOBS
    # 99.9% (z = 3.29): 63 cases share this test, so a 95% interval would miss about three by chance alone.
    assert est.contains(e.gain(scheme, adversary, m), z=3.29), (est, e.gain(scheme, adversary, m))


def test_interval_rejects_a_wrong_value():
    m = e.Market(collusion=0.2, audit_p=0.3, stake=0.01)
    est = e.simulate("audit", "colluding", m, seed=1)
    assert est.hi > est.lo
    assert not est.contains(e.gain("audit", "colluding", m) + 5 * (est.hi - est.lo))


@pytest.mark.parametrize("r", [0.0, 0.1, R13])
def test_posp_condition_for_one_auditor(r):
    # With k = 1 and a panel the coalition cannot hold (m = 1, r^1 < 1/2 majority needs the one arbiter), the
    # lazy-with-collusion gain changes sign exactly at p* = C / ((1 - r) h (R + S)).
    m = e.Market(collusion=r, audit_k=1, arbiters=1, audit_pool_bps=0, stake=0.01)
    h = 1 - r  # the one arbiter is honest with probability 1 - r
    p_star = m.saved / ((1 - r) * h * (m.fee + m.slash))
    assert e.gain("audit", "colluding", m.with_(audit_p=p_star * 1.01)) < 0
    assert e.gain("audit", "colluding", m.with_(audit_p=p_star * 0.99)) > 0


def test_posp_quoted_form_with_reliable_arbitration():
    # Arbitration with many arbiters and r = 0.2 is nearly always honest: the quoted p > C/((1-r)(R+S)) holds.
    m = e.Market(collusion=0.2, audit_k=1, arbiters=51, audit_pool_bps=0, stake=0.01)
    p_quoted = m.saved / ((1 - 0.2) * (m.fee + m.slash))
    assert e.gain("audit", "colluding", m.with_(audit_p=p_quoted * 1.05)) < 0
    assert e.gain("audit", "colluding", m.with_(audit_p=p_quoted * 0.95)) > 0


def test_more_auditors_catch_more_colluders():
    m = e.Market(collusion=R13)
    assert e.audit_detection(m.with_(audit_k=1)) < e.audit_detection(m.with_(audit_k=3))


def test_one_auditor_cannot_resist_bribery():
    # A lone auditor paid to echo a lie is never contradicted: its gain is the bribe plus the saved compute.
    m = e.Market(audit_k=1)
    assert e.gain("audit", "bribed_auditor", m) == pytest.approx(m.bribe_per_auditor + m.compute)
    assert e.gain("audit", "bribed_auditor", m.with_(audit_k=3, collusion=0.1)) < 0


def test_sometimes_is_linear_in_cheat_rate():
    m = e.Market(collusion=0.2)
    for s in e.SCHEMES:
        assert e.gain(s, "sometimes", m.with_(cheat_rate=0.5)) == pytest.approx(0.5 * e.gain(s, "lazy", m))


def test_self_challenge_needs_the_burn():
    # Issue 10, C: without a burn, the coalition recovers the whole slash through its puppet and cheating pays
    # whenever watchers rarely check; the burn makes the same attack lose.
    m = e.Market(watch_p=0.05, watchers=1, stake=2.0)
    assert e.self_challenge_gain(m.with_(burn_bps=0)) > 0
    b = e.min_burn("self_challenge", m)
    assert 0 < b < 1
    assert e.self_challenge_gain(m.with_(burn_bps=round(b * 10_000))) < 0
    assert e.self_challenge_gain(m.with_(burn_bps=round(b * 10_000) - 1)) >= 0
    est = e.simulate_self_challenge(m.with_(burn_bps=1000), seed=3)
    assert est.contains(e.self_challenge_gain(m.with_(burn_bps=1000)))


def test_self_grief_without_puppets_always_loses():
    m = e.Market(burn_bps=0)
    assert e.self_grief_gain(m, puppets=0) < 0


def test_self_grief_with_a_puppet_needs_almost_all_burned():
    m = e.Market()
    b = e.min_burn("self_grief", m, puppets=1)
    assert b > 0.99
    assert e.self_grief_gain(m.with_(burn_bps=round(b * 10_000)), puppets=1) < 0


def test_params_choice_deters_everyone():
    c = choose(e.Market(collusion=R13))
    assert all(g < 0 for g in c.gains.values())
    assert c.market.audit_k >= 2  # k = 1 loses to the bribed auditor
    assert smallest_p(c.market) == c.market.audit_p
    assert smallest_n(c.market) == c.market.quorum_n
    assert c.margin("audit") > 0


def test_params_p_grows_as_slash_shrinks():
    lo = smallest_p(e.Market(collusion=0.2, stake=2.0))
    hi = smallest_p(e.Market(collusion=0.2, stake=0.05))
    assert lo is not None and hi is not None and hi > lo


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"fee": -1.0}, "fee must be"),
        ({"collusion": 0.5}, "collusion share"),
        ({"audit_p": 1.5}, "audit_p"),
        ({"quorum_n": 4}, "odd"),
        ({"slash_bps": 20_000}, "slash_bps"),
        ({"cheap": 1.0}, "cheap output"),
        ({"stake": float("nan")}, "stake"),
    ],
)
def test_bad_market_is_a_clear_error(kwargs, msg):
    with pytest.raises(e.InvalidEconomics, match=msg):
        e.Market(**kwargs)


def test_bribed_auditor_has_no_move_outside_audit():
    with pytest.raises(e.InvalidEconomics, match="no move"):
        e.gain("quorum", "bribed_auditor", e.Market())


def test_cli_params_prints_a_table_and_rejects_bad_flags():
    runner = CliRunner()
    ok = runner.invoke(app, ["params", "--price", "0.003", "--compute", "0.0005"])
    assert ok.exit_code == 0, ok.output
    assert "audit: p =" in ok.output and "quorum: n =" in ok.output and "bribed_auditor" in ok.output
    assert "a self-challenge loses from" in ok.output
    bad = runner.invoke(app, ["params", "--collusion", "0.9"])
    assert bad.exit_code == 2
    assert "collusion share" in bad.output and "Traceback" not in bad.output
