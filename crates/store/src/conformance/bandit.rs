//! Conformance checks of the offer log.

use super::*;

/// Decisions of measured flows land with their batch and read back per flow and period, oldest first; a
/// batch that does not land leaves none.
/// Offers enter the log in the processing commit (once, however often the delivery is reprocessed); an
/// order within the window settles the customer's open offers; expiry settles the rest at zero; every
/// settlement has its own sequence number, read back in order.
pub async fn offer_log_settles_each_offer_once(s: Arc<dyn Store>) {
    for i in 0..3 {
        s.commit_delivery(delivery(&format!("of{i}"), None)).await.unwrap();
    }
    let pending = s.pending_deliveries(10).await.unwrap();
    let offer = |id: &str, c: u32, decided: i64, end: i64, explored: bool| NewOffer {
        id: id.into(),
        flow: "offers".into(),
        customer: cust(c),
        arm: "pct_10".into(),
        propensity: 0.25,
        explored,
        context: vec![1.0, 0.5, -2.0],
        decided_at_ms: decided,
        window_end_ms: end,
    };
    let first = ProcessOutcome {
        seq: pending[0].seq,
        trace_id: Some(pending[0].trace_id),
        status: Some(DeliveryStatus::Processed),
        terminal: Some(TerminalState::Ignored("offers".into())),
        offers: vec![offer("a", 1, 1_000, 5_000, false), offer("b", 2, 1_000, 2_000, true)],
        ..Default::default()
    };
    s.commit_processing(vec![first.clone()]).await.unwrap();
    // The same offers again (a replay): still one row each.
    s.commit_processing(vec![ProcessOutcome {
        seq: pending[1].seq,
        trace_id: Some(pending[1].trace_id),
        ..first
    }])
    .await
    .unwrap();
    let all = s.offers_of_flow("offers").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].context, vec![1.0, 0.5, -2.0]);
    assert!(all.iter().all(|o| o.settled_at_ms.is_none() && o.settle_seq.is_none()));
    // An order of customer 1 at 3 000 settles offer a; an order of customer 2 after b's window settles nothing.
    s.commit_processing(vec![ProcessOutcome {
        seq: pending[2].seq,
        trace_id: Some(pending[2].trace_id),
        status: Some(DeliveryStatus::Processed),
        terminal: Some(TerminalState::Ignored("order".into())),
        offer_settlements: vec![
            OfferSettlement { customer: cust(1), order_at_ms: 3_000, value: 80.0 },
            OfferSettlement { customer: cust(1), order_at_ms: 3_500, value: 50.0 },
            OfferSettlement { customer: cust(2), order_at_ms: 2_500, value: 99.0 },
        ],
        ..Default::default()
    }])
    .await
    .unwrap();
    let settled = s.settled_offers_after(0, 10).await.unwrap();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(
        (settled[0].id.as_str(), settled[0].outcome_value, settled[0].settle_seq),
        ("a", Some(80.0), Some(1))
    );
    // Expiry settles b at zero, once.
    assert_eq!(s.expire_offers(1_500).await.unwrap(), 0, "b's window is still open");
    assert_eq!(s.expire_offers(2_001).await.unwrap(), 1);
    assert_eq!(s.expire_offers(9_000).await.unwrap(), 0);
    let after = s.settled_offers_after(1, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id.as_str(), after[0].outcome_value, after[0].settle_seq),
        ("b", Some(0.0), Some(2))
    );
    assert!(after[0].explored);
    assert!(s.settled_offers_after(2, 10).await.unwrap().is_empty());
}
