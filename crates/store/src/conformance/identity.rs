//! Conformance checks of identity.

use super::*;

pub async fn aliases_are_written_with_processing_and_states_merged_away(s: Arc<dyn Store>) {
    let known = cust(21);
    let anon: CustomerId = "anon:v-1".parse().unwrap();
    let state = |c: &CustomerId| StoredState { customer: c.clone(), email: None, state: b"{}".to_vec() };
    for (webhook, outcome) in [
        ("a1", ProcessOutcome { states: vec![state(&anon)], ..Default::default() }),
        (
            "a2",
            ProcessOutcome {
                states: vec![state(&known)],
                deleted_states: vec![anon.clone()],
                aliases: vec![
                    NewAlias { alias: anon.to_string(), customer: known.clone(), at_ms: 5, trace_id: None },
                    NewAlias {
                        alias: "email:00112233aabbccdd".into(),
                        customer: known.clone(),
                        at_ms: 5,
                        trace_id: None,
                    },
                ],
                ..Default::default()
            },
        ),
    ] {
        let d = delivery(webhook, None);
        let trace = d.trace_id;
        s.commit_delivery(d).await.unwrap();
        let seq = s.pending_deliveries(10).await.unwrap().iter().find(|p| p.trace_id == trace).unwrap().seq;
        let o =
            ProcessOutcome { seq, trace_id: Some(trace), status: Some(DeliveryStatus::Processed), ..outcome };
        s.commit_processing(vec![o]).await.unwrap();
    }
    assert!(
        s.load_states(std::slice::from_ref(&anon)).await.unwrap().is_empty(),
        "aliases: merged state gone"
    );
    assert_eq!(s.load_states(std::slice::from_ref(&known)).await.unwrap().len(), 1);
    let found = s
        .resolve_aliases(&[anon.to_string(), "anon:unknown".into(), "email:00112233aabbccdd".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "aliases: the known ones resolve");
    assert!(found.iter().all(|a| a.customer == known));
    let of: Vec<String> = s.aliases_of(&known).await.unwrap().into_iter().map(|a| a.alias).collect();
    assert_eq!(of, ["anon:v-1", "email:00112233aabbccdd"], "aliases: by customer, sorted");
    // Read together: the aliases as `resolve_aliases` answers them, and the states of the customers asked
    // for and of those the aliases point at, each once; an absent state is absent.
    s.put_states(vec![state(&cust(22))]).await.unwrap();
    let keys = ["email:00112233aabbccdd".to_string(), "anon:unknown".into(), anon.to_string()];
    let (aliases, states) = s.resolve_with_states(&keys, &[cust(22), cust(23), known.clone()]).await.unwrap();
    assert_eq!(aliases, s.resolve_aliases(&keys).await.unwrap());
    let mut ids: Vec<String> = states.iter().map(|st| st.customer.to_string()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [cust(21).to_string(), cust(22).to_string()],
        "states asked for and pointed at, once each"
    );
    let (aliases, states) = s.resolve_with_states(&[anon.to_string()], &[]).await.unwrap();
    assert_eq!((aliases.len(), states.len()), (1, 1), "a target's state comes with its alias");
    assert_eq!(states[0].customer, known);
    let (aliases, states) = s.resolve_with_states(&[], &[]).await.unwrap();
    assert!(aliases.is_empty() && states.is_empty());
}
