//! Unit tests of the coordinator's state: placement, failures, joins, modes, refused commands.

use super::*;

fn cluster(daemons: usize) -> Cluster {
    let mut c = Cluster::new(42);
    for i in 0..daemons {
        let out = c
            .apply(&Command::Register {
                id: None,
                addr: format!("127.0.0.1:{}", 2012 + i),
            })
            .unwrap();
        assert_eq!(out, Outcome::Registered(ServerId(i as u64 + 1)));
    }
    c
}

#[test]
fn chains_spread_over_servers() {
    let mut c = cluster(3);
    let v = c.config.version;
    c.apply(&Command::add_space("space s key k create 4 partitions").expect("a valid space"))
        .unwrap();
    assert_eq!(c.config.version, v + 1);
    let chains = &c.config.spaces["s"].chains;
    let ids = |v: &[u64]| v.iter().map(|&i| ServerId(i)).collect::<Vec<_>>();
    assert_eq!(chains[0], ids(&[1, 2]));
    assert_eq!(chains[1], ids(&[2, 3]));
    assert_eq!(chains[2], ids(&[3, 1]));
    assert_eq!(chains[3], ids(&[1, 2]));
    assert!(c.unstable().is_empty());
}

#[test]
fn the_only_copy_of_a_region_cannot_be_forgotten() {
    let mut c = cluster(2);
    c.apply(
        &Command::add_space("space s key k create 2 partitions tolerate 0 failures")
            .expect("a valid space"),
    )
    .unwrap();
    let before = c.clone();
    let (code, why) = c.apply(&Command::ServerForget(ServerId(1))).unwrap_err();
    assert_eq!(code, ReturnCode::AdminServerError);
    assert!(why.contains("only complete copy of region"), "{why}");
    assert_eq!(c, before);
    // With a second replica it can go.
    c.apply(&Command::FaultTolerance {
        space: "s".into(),
        tolerate: 1,
    })
    .unwrap();
    let regions: Vec<_> = (0..2)
        .map(|index| RegionId {
            space: c.config.spaces["s"].id,
            index,
        })
        .collect();
    for r in &regions {
        if let Some(j) = c.config.joiner(*r) {
            c.apply(&Command::TransferComplete {
                server: j.server,
                region: *r,
                since: j.since,
            })
            .unwrap();
        }
    }
    c.apply(&Command::ServerForget(ServerId(1))).unwrap();
    assert!(c.config.server(ServerId(1)).is_none());
}

#[test]
fn a_space_works_with_fewer_daemons_than_replicas() {
    let mut c = cluster(1);
    c.apply(&Command::add_space("space s key k tolerate 2 failures").expect("a valid space"))
        .unwrap();
    assert!(c.config.spaces["s"].chains.iter().all(|ch| ch.len() == 1));
}

#[test]
fn every_subspace_has_regions_with_chains_of_their_own() {
    let mut c = cluster(3);
    let text = "space s key k attributes a, int n subspace a subspace n create 4 partitions";
    c.apply(&Command::add_space(text).expect("a valid space"))
        .unwrap();
    let s = &c.config.spaces["s"];
    assert_eq!(
        s.chains.len(),
        12,
        "4 regions for the key and for each subspace"
    );
    assert_eq!(s.joining.len(), 12);
    assert!(s.chains.iter().all(|ch| ch.len() == 2));
    assert_eq!(s.subspace_of(5), (1, 1));
    assert_eq!(s.subspace_region(2, 3).index, 11);
    // Keys are placed in the key subspace's regions only.
    let placed: std::collections::BTreeSet<u32> = (0..100)
        .map(|i| {
            s.region_of(&hyperdex_model::Value::string(format!("k{i}")))
                .unwrap()
                .index
        })
        .collect();
    assert_eq!(placed, (0..4).collect());
    // A failure is repaired in every subspace alike.
    c.apply(&Command::ServerFailed(ServerId(2))).unwrap();
    let s = &c.config.spaces["s"];
    for (chain, joining) in s.chains.iter().zip(&s.joining) {
        assert!(!chain.contains(&ServerId(2)));
        assert_eq!(chain.len(), 2, "refilled: {chain:?} {joining:?}");
    }
    // The limit on regions counts every subspace's.
    let many = format!(
        "space t key k attributes a subspace a create {} partitions",
        MAX_REGIONS / 2
    );
    let refused = c.apply(&Command::add_space(&many).expect("a valid space"));
    assert!(
        matches!(&refused, Err((ReturnCode::BadSpace, m)) if m.contains("limit of")),
        "{refused:?}"
    );
}

#[test]
fn failures_remove_servers_from_chains() {
    let mut c = cluster(3);
    c.apply(&Command::add_space("space s key k create 3 partitions").expect("a valid space"))
        .unwrap();
    c.apply(&Command::ServerFailed(ServerId(2))).unwrap();
    for chain in &c.config.spaces["s"].chains {
        assert!(!chain.contains(&ServerId(2)));
        assert!(!chain.is_empty());
    }
    let v = c.config.version;
    assert_eq!(
        c.apply(&Command::ServerFailed(ServerId(2))),
        Ok(Outcome::Unchanged)
    );
    assert_eq!(c.config.version, v);
}

#[test]
fn a_restarted_server_rejoins_by_state_transfer() {
    let mut c = cluster(3);
    c.apply(&Command::add_space("space s key k create 3 partitions").expect("a valid space"))
        .unwrap();
    c.apply(&Command::ServerFailed(ServerId(2))).unwrap();
    let s = &c.config.spaces["s"];
    // Chains that lost server 2 got another server as a joiner at their tail.
    for (chain, joining) in s.chains.iter().zip(&s.joining) {
        assert_eq!(chain.len(), 2);
        if let Some(j) = joining {
            assert_eq!(chain.last(), Some(&j.server));
        }
    }
    // Server 2 comes back: it is available again and joins chains that are short.
    c.apply(&Command::Register {
        id: Some(ServerId(2)),
        addr: "127.0.0.1:2013".into(),
    })
    .unwrap();
    assert!(!c.unstable().is_empty());
    complete_all_joins(&mut c);
    assert!(c.unstable().is_empty(), "{:?}", c.unstable());
    assert!(
        c.load().get(&ServerId(2)).is_some_and(|&l| l >= 1),
        "server 2 is back in chains"
    );
}

/// Completes every join, as daemons would, until nothing moves any more.
fn complete_all_joins(c: &mut Cluster) {
    for _ in 0..10_000 {
        let space = c.config.spaces["s"].clone();
        let Some((index, j)) = space
            .joining
            .iter()
            .enumerate()
            .find_map(|(i, j)| j.map(|j| (i, j)))
        else {
            return;
        };
        let region = RegionId {
            space: space.id,
            index: index as u32,
        };
        c.apply(&Command::TransferComplete {
            server: j.server,
            region,
            since: j.since,
        })
        .unwrap();
    }
    panic!("joins never ended");
}

#[test]
fn a_new_daemon_takes_a_fair_share() {
    let mut c = cluster(2);
    c.apply(&Command::add_space("space s key k create 12 partitions").expect("a valid space"))
        .unwrap();
    c.apply(&Command::Register {
        id: None,
        addr: "127.0.0.1:3000".into(),
    })
    .unwrap();
    complete_all_joins(&mut c);
    let load = c.load();
    assert_eq!(
        load.values().sum::<usize>(),
        24,
        "every region keeps two replicas"
    );
    assert!(load.values().all(|&l| l == 8), "{load:?}");
    assert!(c.unstable().is_empty());
}

#[test]
fn the_last_replica_of_a_region_is_never_removed() {
    let mut c = cluster(2);
    c.apply(&Command::add_space("space s key k create 2 partitions").expect("a valid space"))
        .unwrap();
    c.apply(&Command::ServerFailed(ServerId(1))).unwrap();
    c.apply(&Command::ServerFailed(ServerId(2))).unwrap();
    for chain in &c.config.spaces["s"].chains {
        assert_eq!(chain.len(), 1, "the last replica stays: {chain:?}");
    }
}

#[test]
fn empty_chains_are_filled_when_daemons_arrive() {
    let mut c = cluster(0);
    c.apply(&Command::add_space("space s key k create 2 partitions").expect("a valid space"))
        .unwrap();
    assert!(c.config.spaces["s"].chains.iter().all(Vec::is_empty));
    c.apply(&Command::Register {
        id: None,
        addr: "127.0.0.1:2012".into(),
    })
    .unwrap();
    assert!(c.config.spaces["s"].chains.iter().all(|ch| ch.len() == 1));
}

#[test]
fn fault_tolerance_grows_by_joins_and_shrinks_from_the_tail() {
    let set = |c: &mut Cluster, tolerate: u32| {
        c.apply(&Command::FaultTolerance {
            space: "s".into(),
            tolerate,
        })
    };
    let mut c = cluster(4);
    c.apply(&Command::add_space("space s key k").expect("a valid space"))
        .unwrap();
    let heads: Vec<ServerId> = c.config.spaces["s"].chains.iter().map(|ch| ch[0]).collect();
    assert!(c.config.spaces["s"].chains.iter().all(|ch| ch.len() == 2));

    let v = c.config.version;
    set(&mut c, 2).unwrap();
    assert!(c.config.version > v);
    let s = &c.config.spaces["s"];
    assert_eq!(s.schema.tolerate, 2);
    for (chain, joining) in s.chains.iter().zip(&s.joining) {
        let j = joining.expect("every region gets a joiner");
        assert_eq!(chain.len(), 3);
        assert_eq!(chain.last(), Some(&j.server));
        assert_eq!(j.replaces, None);
    }
    assert!(!c.unstable().is_empty());
    complete_all_joins(&mut c);
    assert!(c.unstable().is_empty(), "{:?}", c.unstable());
    assert!(c.config.spaces["s"].chains.iter().all(|ch| ch.len() == 3));

    set(&mut c, 0).unwrap();
    let s = &c.config.spaces["s"];
    assert!(s.chains.iter().all(|ch| ch.len() == 1));
    assert!(s.joining.iter().all(Option::is_none));
    let after: Vec<ServerId> = s.chains.iter().map(|ch| ch[0]).collect();
    assert_eq!(after, heads, "heads never move");
    assert!(c.unstable().is_empty());

    // Mid-join, lowering the tolerance calls the joins off.
    set(&mut c, 1).unwrap();
    assert!(c.config.spaces["s"].joining.iter().all(Option::is_some));
    set(&mut c, 0).unwrap();
    let s = &c.config.spaces["s"];
    assert!(s.chains.iter().all(|ch| ch.len() == 1));
    assert!(s.joining.iter().all(Option::is_none));

    let before = c.clone();
    let err = c
        .apply(&Command::FaultTolerance {
            space: "nope".into(),
            tolerate: 1,
        })
        .unwrap_err();
    assert_eq!(err.0, ReturnCode::AdminNotFound);
    let err = set(&mut c, MAX_TOLERATE + 1).unwrap_err();
    assert_eq!(err.0, ReturnCode::BadSpace);
    assert_eq!(c, before);
}

#[test]
fn read_only_mode_is_switched_by_a_new_configuration() {
    let mut c = cluster(2);
    let v = c.config.version;
    assert_eq!(c.apply(&Command::ReadOnly(true)), Ok(Outcome::Done));
    assert!(c.config.read_only && c.config.version == v + 1);
    assert_eq!(c.apply(&Command::ReadOnly(true)), Ok(Outcome::Unchanged));
    assert_eq!(c.config.version, v + 1);
    assert_eq!(c.apply(&Command::ReadOnly(false)), Ok(Outcome::Done));
    assert!(!c.config.read_only);
    assert!(c
        .config
        .to_string()
        .lines()
        .next()
        .is_some_and(|l| !l.contains("read-only")));
}

#[test]
fn errors_change_nothing() {
    let mut c = cluster(2);
    c.apply(&Command::add_space("space s key k").expect("a valid space"))
        .unwrap();
    let before = c.clone();
    let (code, msg) = c
        .apply(&Command::add_space("space s key k").expect("a valid space"))
        .unwrap_err();
    assert_eq!(code, ReturnCode::Duplicate);
    assert!(msg.contains("already exists"));
    let (code, msg) = Command::add_space("space t key k attributes a, a").unwrap_err();
    assert_eq!(code, ReturnCode::BadSpace);
    assert!(msg.contains("line 1, column 29"), "{msg}");
    assert_eq!(
        c.apply(&Command::RmSpace("nope".into())).unwrap_err().0,
        ReturnCode::AdminNotFound
    );
    assert_eq!(
        c.apply(&Command::Register {
            id: Some(ServerId(99)),
            addr: "x:1".into()
        })
        .unwrap_err()
        .0,
        ReturnCode::AdminNotFound
    );
    assert_eq!(
        c.apply(&Command::Register {
            id: None,
            addr: "127.0.0.1:2012".into()
        })
        .unwrap_err()
        .0,
        ReturnCode::Duplicate
    );
    assert_eq!(c, before);
}

#[test]
fn oversized_spaces_are_refused_with_the_limit_named() {
    let long = format!("space s key k attributes {}", "a".repeat(MAX_DESCRIPTION));
    let (code, msg) = Command::add_space(&long).unwrap_err();
    assert_eq!(code, ReturnCode::BadSpace);
    assert!(msg.contains("over the limit of 65536"), "{msg}");
    let attrs: Vec<String> = (0..=MAX_ATTRIBUTES).map(|i| format!("a{i}")).collect();
    let wide = format!("space s key k attributes {}", attrs.join(", "));
    let (_, msg) = Command::add_space(&wide).unwrap_err();
    assert!(msg.contains("1025 attributes"), "{msg}");

    let mut c = cluster(1);
    let big = |name: &str| {
        Command::add_space(&format!("space {name} key k create 65536 partitions"))
            .expect("a valid space")
    };
    c.apply(&big("a")).unwrap();
    c.apply(&big("b")).unwrap();
    let before = c.clone();
    let (code, msg) = c.apply(&big("c")).unwrap_err();
    assert_eq!(code, ReturnCode::BadSpace);
    assert!(msg.contains("limit of 131072"), "{msg}");
    assert_eq!(c, before);
}
