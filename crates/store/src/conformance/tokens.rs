//! Conformance checks of API tokens.

use super::*;

/// API tokens: created under unique names, found by hash until revoked, listed without their hashes.
pub async fn api_tokens(s: Arc<dyn Store>) {
    // Hashes as the caller computes them (SHA-256, hex); the store only compares them.
    let (h1, h2, h3) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    assert!(s.list_tokens().await.unwrap().is_empty());
    assert_eq!(s.token_by_hash(&h1).await.unwrap(), None);
    let ci = s.create_token("ci", "viewer", &h1).await.unwrap();
    let alice = s.create_token("alice", "admin", &h2).await.unwrap();
    assert_ne!(ci, alice);

    // A name is unique: refused with a clear error, and nothing is written.
    match s.create_token("ci", "admin", &h3).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("`ci`") && msg.contains("exists"), "{msg}"),
        other => panic!("duplicate name: expected a conflict, got {other:?}"),
    }
    assert_eq!(s.token_by_hash(&h3).await.unwrap(), None, "a refused token is not stored");
    // The same hash twice (a token generated twice) is refused too.
    assert!(matches!(s.create_token("bob", "admin", &h1).await, Err(StoreError::Conflict(_))));

    let found = s.token_by_hash(&h1).await.unwrap().expect("found by its hash");
    assert_eq!((found.id, found.name.as_str(), found.role.as_str()), (ci, "ci", "viewer"));
    assert_eq!((found.revoked_at_ms, found.last_used_at_ms), (None, None));
    assert!(found.created_at_ms > 0);
    assert_eq!(s.token_by_hash(&h2).await.unwrap().unwrap().name, "alice");

    // Last use is kept to the minute.
    s.touch_token(ci, 1_000_000).await.unwrap();
    s.touch_token(ci, 1_030_000).await.unwrap();
    assert_eq!(s.token_by_hash(&h1).await.unwrap().unwrap().last_used_at_ms, Some(1_000_000));
    s.touch_token(ci, 1_060_000).await.unwrap();
    assert_eq!(s.token_by_hash(&h1).await.unwrap().unwrap().last_used_at_ms, Some(1_060_000));

    // The list names every token, oldest first, and carries nothing a hash could be read from.
    let list = s.list_tokens().await.unwrap();
    assert_eq!(list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["ci", "alice"]);
    let listed = serde_json::to_string(&list).unwrap();
    assert!(!listed.contains(&h1) && !listed.contains(&h2), "{listed}");

    // Revoking makes the lookup fail; by name or by id; again changes nothing.
    let revoked = s.revoke_token(TokenRef::Name("ci".into())).await.unwrap();
    let at = revoked.revoked_at_ms.expect("revoked");
    assert_eq!(s.token_by_hash(&h1).await.unwrap(), None, "a revoked token is not found");
    assert_eq!(s.revoke_token(TokenRef::Id(ci)).await.unwrap().revoked_at_ms, Some(at), "idempotent");
    assert!(s.token_by_hash(&h2).await.unwrap().is_some(), "other tokens are untouched");
    assert!(matches!(s.revoke_token(TokenRef::Name("nobody".into())).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.revoke_token(TokenRef::Id(9_999)).await, Err(StoreError::NotFound(_))));
    s.revoke_token(TokenRef::Id(alice)).await.unwrap();
    assert_eq!(s.token_by_hash(&h2).await.unwrap(), None);
    let list = s.list_tokens().await.unwrap();
    assert_eq!(list.len(), 2, "revoked tokens stay listed");
    assert!(list.iter().all(|t| t.revoked_at_ms.is_some()));

    // A revoked token's name is not reused (the audit trail attributes actions by name).
    match s.create_token("ci", "viewer", &h3).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("revoked"), "{msg}"),
        other => panic!("reusing a revoked name: expected a conflict, got {other:?}"),
    }
}
