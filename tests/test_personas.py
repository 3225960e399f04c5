"""The demo personas held for 45 simulated minutes through the real webhook, with the demo flow.

Customers are written straight into the `customers` / `issues` tables (the
schema is the contract with the CRM import), so these tests depend only on the
webhook side. Helpers here are also used by test_webhook and test_simulate.
"""
import json
from pathlib import Path

import pytest

from app.storage.connect import connect
from app.core.flows import read_flow_file
from app.storage.catalog import save_catalog
from app.core.phones import to_e164
from app.web.simulate import simulate_call

DEMO_DIR = Path(__file__).resolve().parent.parent / "app" / "demo_data"
DANA, SAM, NIA, LEE = "+15555550100", "+15555550101", "+15555550102", "+15555550103"


def load_demo_flow(db_path) -> None:
    db = connect(db_path)
    save_catalog(db, read_flow_file(DEMO_DIR / "flows.toml"))
    db.close()


def insert_customer(db_path, customer_id, phone_e164, products=(), issues=(), opt_out=False, name=""):
    """One customer row (products as JSON list text) and their open issues, as the schema says."""
    db = connect(db_path)
    db["customers"].upsert({"customer_id": customer_id, "phone_e164": phone_e164, "name": name,
                            "products": json.dumps(list(products)), "marketing_opt_out": int(opt_out),
                            "updated_at": "2026-11-20T00:00:00Z"}, pk="customer_id")
    for issue_id, severity in issues:
        db["issues"].upsert({"id": issue_id, "customer_id": customer_id, "severity": severity,
                             "summary": "test issue", "opened_at": "2026-11-20T09:12:00Z", "closed_at": None,
                             "updated_at": "2026-11-20T09:12:00Z"}, pk="id")
    db.close()


def insert_demo_customers(db_path) -> None:
    for customer in json.loads((DEMO_DIR / "customers.json").read_text()):
        insert_customer(db_path, customer["customer_id"], to_e164(customer["phone"]), customer["products"],
                        [(i["id"], i["severity"]) for i in customer["open_issues"]],
                        customer["marketing_opt_out"], customer["name"])


def promo_share_at_each_promo(timeline) -> list[float]:
    """Promo seconds / hold seconds (the promo included) at the moment each promo was chosen."""
    shares, promo_s = [], 0.0
    for play in timeline:
        if play["kind"] == "promo":
            promo_s += play["duration_s"]
            shares.append(promo_s / (play["at_s"] + play["duration_s"]))
    return shares


@pytest.fixture
def demo_app(app, db_path):
    load_demo_flow(db_path)
    insert_demo_customers(db_path)
    return app


def test_dana_open_high_issue_owns_galaxy_hears_no_promo_and_the_notice_first(demo_app):
    result = simulate_call(demo_app, caller_phone=DANA, minutes=45)

    timeline = result["timeline"]
    assert result["summary"]["promo_plays"] == 0
    assert all(play["kind"] != "promo" for play in timeline)
    assert timeline[0]["segment_id"] == "outage-northeast" and timeline[0]["kind"] == "notice"
    assert sum(play["segment_id"] == "outage-northeast" for play in timeline) == 1
    assert any("promo skipped: open issue CASE-1042 (high)" in play["reason"] for play in timeline)
    assert timeline[-1]["at_s"] + timeline[-1]["duration_s"] >= 45 * 60


def test_sam_owns_galaxy_in_other_spelling_never_hears_galaxy_upgrade(demo_app):
    result = simulate_call(demo_app, caller_phone=SAM, minutes=45)

    played = [play["segment_id"] for play in result["timeline"]]
    assert "galaxy-upgrade" not in played
    assert played.count("fiber-offer") == 1  # the promo he does not own still plays, once
    assert any("promo galaxy-upgrade skipped: caller owns galaxy s7" in play["reason"]
               for play in result["timeline"])


def test_nia_new_caller_caps_and_share_hold_and_second_call_does_not_replay(demo_app):
    first = simulate_call(demo_app, caller_phone=NIA, minutes=45)
    second = simulate_call(demo_app, caller_phone=NIA, minutes=45)
    third = simulate_call(demo_app, caller_phone=NIA, minutes=45)

    for call in (first, second):
        assert call["summary"]["promo_plays"] == 1  # promos_per_call_max = 1
        assert all(share <= 0.10 for share in promo_share_at_each_promo(call["timeline"]))
        assert call["summary"]["promo_share"] <= 0.10
        assert any("promo cap reached (1 per call)" in p["reason"] for p in call["timeline"])
    assert first["summary"]["promos"] == ["galaxy-upgrade"]
    assert second["summary"]["promos"] == ["fiber-offer"]
    assert any("promo galaxy-upgrade skipped: heard" in p["reason"] for p in second["timeline"])
    # Both promos heard within promo_repeat_days: the third call hears none.
    assert third["summary"]["promo_plays"] == 0
    assert second["summary"]["started_at"] > first["summary"]["started_at"]


def test_lee_opted_out_hears_no_promo(demo_app):
    result = simulate_call(demo_app, caller_phone=LEE, minutes=45)

    assert result["summary"]["promo_plays"] == 0
    assert any("promo skipped: caller opted out of marketing" in p["reason"] for p in result["timeline"])


def test_every_answer_of_a_simulated_call_is_in_the_play_log(demo_app, db_path):
    result = simulate_call(demo_app, caller_phone=DANA, minutes=10)

    db = connect(db_path)
    rows = list(db.query("SELECT caller, customer_id, queue, segment_id, kind, at_s, duration_s, reason "
                         "FROM plays WHERE call_sid = ? ORDER BY id", [result["call_sid"]]))
    assert [(r["segment_id"], r["at_s"]) for r in rows] == [(p["segment_id"], p["at_s"]) for p in result["timeline"]]
    assert {(r["caller"], r["customer_id"], r["queue"]) for r in rows} == {(DANA, "C-1001", "support")}
    assert all(r["reason"] for r in rows)
