use super::*;
use crate::batch::mapping_window;
use burn::backend::Flex;

fn spiral(n: usize) -> Episode {
    Episode::generate(
        &MappingConfig {
            map_size: n,
            ..MappingConfig::default()
        },
        0,
        0,
    )
    .unwrap()
}

#[test]
fn spiral_positions_and_lengths() {
    let e = spiral(25);
    assert_eq!(e.len(), 529);
    assert_eq!(MappingConfig::default().episode_len(), Some(529));
    let first = [
        (12, 12),
        (12, 13),
        (13, 13),
        (13, 12),
        (13, 11),
        (12, 11),
        (11, 11),
        (11, 12),
        (11, 13),
        (11, 14),
    ];
    assert_eq!(&e.positions()[..10], &first);
    assert_eq!(*e.positions().last().unwrap(), (1, 23));
    assert_eq!(e.frame_position(528), (14, 36));
    assert_eq!(e.frame_position(0), (25, 25));
    // Every interior cell exactly once; each move is one step.
    let mut seen = std::collections::HashSet::new();
    for w in e.positions().windows(2) {
        assert_eq!(w[0].0.abs_diff(w[1].0) + w[0].1.abs_diff(w[1].1), 1);
    }
    for &p in e.positions() {
        assert!((1..=23).contains(&p.0) && (1..=23).contains(&p.1));
        assert!(seen.insert(p));
    }
    assert_eq!(spiral(15).len(), 169);
    assert_eq!(MappingConfig::small().episode_len(), Some(169));
    assert_eq!(spiral(15).positions()[..3], [(7, 7), (7, 8), (8, 8)]);
}

#[test]
fn random_walk_never_enters_a_wall() {
    for len in [500, 1500] {
        for index in 0..5 {
            let cfg = MappingConfig {
                motion: Motion::RandomWalk { len },
                ..MappingConfig::default()
            };
            let e = Episode::generate(&cfg, 11, index).unwrap();
            assert_eq!(e.len(), len);
            for (t, &p) in e.positions().iter().enumerate() {
                assert!(
                    !e.map().is_wall(p.0 as i64, p.1 as i64),
                    "step {t} at {p:?} is a wall"
                );
            }
            for w in e.positions().windows(2) {
                assert!(w[0].0.abs_diff(w[1].0) + w[0].1.abs_diff(w[1].1) <= 1);
            }
        }
    }
    let cfg = MappingConfig {
        motion: Motion::RandomWalk { len: 5000 },
        map_size: 15,
        ..MappingConfig::default()
    };
    let e = Episode::generate(&cfg, 1, 2).unwrap();
    assert_eq!(e.len(), 5000);
    assert!(
        e.positions()
            .iter()
            .all(|p| !e.map().is_wall(p.0 as i64, p.1 as i64))
    );
}

#[test]
fn policy_actions_are_blocked_by_walls() {
    let cfg = MappingConfig {
        motion: Motion::Policy,
        open_map: true,
        map_size: 5,
        ..MappingConfig::default()
    };
    let mut e = Episode::start(&cfg, 0, 0).unwrap();
    assert_eq!(e.position(), (2, 2));
    assert!(e.act(Action::Up));
    assert!(!e.act(Action::Up), "border wall blocks");
    assert_eq!(e.position(), (1, 2));
    assert_eq!(e.len(), 3);
    assert!(e.act(Action::Left));
    assert_eq!(e.location(3), [24.0, 24.0]);
}

/// Brute force: scan every visited step up to the horizon and compare the true patches directly.
fn brute_force(e: &Episode, t: usize) -> Vec<usize> {
    let k = e.config().query_size;
    let q = e.positions()[e.query_step(t)];
    let query = e.map().patch(q.0, q.1, k);
    let horizon = if e.config().lookahead {
        (t + 1).min(e.len() - 1)
    } else {
        t
    };
    let m = e.config().mask_size;
    let mut out = Vec::new();
    for j in 0..=horizon {
        let p = e.positions()[j];
        if e.map().patch(p.0, p.1, k) == query {
            let r = p.0 as i64 - e.start_position().0 as i64 + e.config().mask_origin as i64;
            let c = p.1 as i64 - e.start_position().1 as i64 + e.config().mask_origin as i64;
            out.push((r * m as i64 + c) as usize);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[test]
fn masks_match_brute_force_on_small_maps() {
    for (motion, lookahead, k, open) in [
        (Motion::Spiral, false, 3, false),
        (Motion::Spiral, true, 3, true),
        (Motion::RandomWalk { len: 300 }, false, 3, false),
        (Motion::RandomWalk { len: 300 }, true, 5, false),
        (Motion::RandomWalk { len: 200 }, false, 9, true),
    ] {
        let cfg = MappingConfig {
            map_size: 9,
            motion,
            lookahead,
            query_size: k,
            obs_size: 3,
            open_map: open,
            mask_size: 20,
            mask_origin: 10,
            ..MappingConfig::default()
        };
        for index in 0..4 {
            let e = Episode::generate(&cfg, 5, index).unwrap();
            let mut positives = 0;
            for t in 0..e.len() {
                let got = e.target_indices(t);
                assert_eq!(got, brute_force(&e, t), "{motion:?} step {t}");
                assert!(
                    !got.is_empty(),
                    "the query's own position is always in the mask"
                );
                let mask = e.target_mask(t);
                assert_eq!(mask.iter().filter(|&&v| v == 1.0).count(), got.len());
                positives += got.len();
                assert!(e.query_step(t) <= t);
            }
            assert!(positives >= e.len());
        }
    }
}

#[test]
fn lookahead_includes_the_next_position() {
    let cfg = MappingConfig {
        lookahead: true,
        open_map: true,
        ..MappingConfig::default()
    };
    let e = Episode::generate(&cfg, 0, 0).unwrap();
    // In an open 25×25 map the centre area is all free, so every 3×3 patch near the start is all zeros and the
    // mask of step 0 with look-ahead holds positions 0 and 1.
    assert_eq!(e.target_indices(0), [25 * 48 + 25, 25 * 48 + 26]);
    let causal = Episode::generate(
        &MappingConfig {
            open_map: true,
            ..MappingConfig::default()
        },
        0,
        0,
    )
    .unwrap();
    assert_eq!(causal.target_indices(0), [25 * 48 + 25]);
}

#[test]
fn observation_and_location_encodings() {
    let cfg = MappingConfig {
        obs_size: 9,
        ..MappingConfig::default()
    };
    let e = Episode::generate(&cfg, 3, 1).unwrap();
    assert_eq!(e.observation(528).len(), 81);
    // The last spiral position (1, 23) sees outside the map: it reads as wall.
    assert_eq!(e.observation(528)[0], WALL);
    assert_eq!(e.location(0), [25.0, 25.0]);
    let norm = Episode::generate(
        &MappingConfig {
            location: LocationEncoding::Normalized,
            ..cfg
        },
        3,
        1,
    )
    .unwrap();
    assert_eq!(norm.location(0), [0.0, 0.0]);
    assert_eq!(norm.location(528), [-11.0 / 12.0, 11.0 / 12.0]);
}

#[test]
fn invalid_configs_are_errors() {
    let bad = [
        MappingConfig {
            map_size: 24,
            ..MappingConfig::default()
        },
        MappingConfig {
            query_size: 27,
            ..MappingConfig::default()
        },
        MappingConfig {
            obs_size: 4,
            ..MappingConfig::default()
        },
        MappingConfig {
            mask_size: 30,
            ..MappingConfig::default()
        },
        MappingConfig {
            mask_origin: 5,
            ..MappingConfig::default()
        },
        MappingConfig {
            density: 2.0,
            ..MappingConfig::default()
        },
        MappingConfig {
            motion: Motion::RandomWalk { len: 0 },
            ..MappingConfig::default()
        },
    ];
    for cfg in bad {
        let err = Episode::generate(&cfg, 0, 0).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }
    assert!(generate_batch(&MappingConfig::default(), 0, 0, 0).is_err());
}

#[test]
fn determinism_same_seed_same_batch_different_seeds_differ() {
    let cfg = MappingConfig::small();
    let a = generate_batch(&cfg, 42, 3, 4).unwrap();
    let b = generate_batch(&cfg, 42, 3, 4).unwrap();
    let c = generate_batch(&cfg, 43, 3, 4).unwrap();
    let dev = Default::default();
    let ta = mapping_window::<Flex>(&a, 0..20, &dev);
    let tb = mapping_window::<Flex>(&b, 0..20, &dev);
    let tc = mapping_window::<Flex>(&c, 0..20, &dev);
    assert_eq!(ta.input.to_data(), tb.input.to_data());
    assert_eq!(ta.query.to_data(), tb.query.to_data());
    assert_eq!(ta.target.to_data(), tb.target.to_data());
    assert_ne!(ta.input.to_data(), tc.input.to_data());
    // Batch-shared query indices; per-sample ones differ between episodes.
    assert!((0..169).all(|t| a[0].query_step(t) == a[3].query_step(t)));
    let s = generate_batch(
        &MappingConfig {
            query_per: QueryPer::Sample,
            ..cfg
        },
        42,
        3,
        4,
    )
    .unwrap();
    assert!((0..169).any(|t| s[0].query_step(t) != s[3].query_step(t)));
    // The test set is fixed.
    let ts = MappingTestSet::new(MappingConfig::default()).unwrap();
    assert_eq!(ts.len, 5000);
    assert_eq!(ts.get(4999).unwrap().map(), ts.get(4999).unwrap().map());
    assert!(ts.get(5000).is_err());
}

#[test]
fn window_tensor_layout() {
    let eps = generate_batch(&MappingConfig::default(), 0, 0, 2).unwrap();
    let w = mapping_window::<Flex>(&eps, 520..529, &Default::default());
    assert_eq!(w.input.dims(), [18, 4, 3, 3]);
    assert_eq!(w.query.dims(), [18, 4, 3, 3]);
    assert_eq!(w.target.dims(), [18, 2304]);
    let input = w.input.to_data().to_vec::<f32>().unwrap();
    // Row 1 = (t = 520, b = 1): free + wall one-hots sum to 1; location channels hold the frame position.
    let row = &input[36..72];
    for i in 0..9 {
        assert_eq!(row[i] + row[9 + i], 1.0);
    }
    let (r, c) = eps[1].frame_position(520);
    assert!(
        row[18..27].iter().all(|&v| v == r as f32) && row[27..36].iter().all(|&v| v == c as f32)
    );
    let q = w.query.to_data().to_vec::<f32>().unwrap();
    assert!(q[18..36].iter().all(|&v| v == 0.0));
    let tgt = w.target.to_data().to_vec::<f32>().unwrap();
    assert_eq!(
        tgt[2304..4608].iter().sum::<f32>() as usize,
        eps[1].target_indices(520).len()
    );
}
