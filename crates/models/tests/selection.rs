//! Model selection on seeded synthetic stores from three generating processes: BG/NBD, Pareto/NBD, and
//! a process neither family matches (one-off buyers, dropout after purchases, a cap on purchases per
//! customer, whole-day gaps, a 90-day acquisition spread). The selected family must get the holdout total
//! about right (within 1.5× of the best candidate's error, or within 5 %), and a family whose calibration
//! tracking is off by more than the bound must be refused.

use nudge_models::holdout::{evaluate_holdout, tracking_series};
use nudge_models::{
    BgNbd, CappedSimulation, CustomerSummary, FamilyCheck, FitOptions, MbgNbd, MisfitRules, ParetoNbd,
    ParetoSimulation, Rfm, Selection, Simulation, TimeUnit, Transaction, TransactionModel, assess,
    frequency_fit, select_family, simulate_bgnbd, simulate_capped_dropout, simulate_pareto_nbd, summarize,
    tracking_fit,
};

const FIRST: i32 = 10_000;
const CAL: i32 = FIRST + 273;
const END: i32 = FIRST + 546;
const CUSTOMERS: usize = 20_000;

fn check<M: TransactionModel>(tx: &[Transaction], s: &[CustomerSummary]) -> Option<FamilyCheck> {
    let data: Vec<Rfm> = s.iter().map(Rfm::from).collect();
    let f = M::fit(&data, &FitOptions::default()).ok()?;
    let h = evaluate_holdout(&f.params, vec![], f.loglik, f.converged, s, None);
    let points = tracking_series(&f.params, tx, s, END, 7);
    Some(FamilyCheck {
        model: M::NAME.into(),
        trusted: f.converged,
        plausible: true,
        loglik: f.loglik,
        holdout_log_score: h.log_score,
        holdout_error: Some(h.predicted_total / h.actual_total - 1.0),
        tracking: tracking_fit(&points, CAL),
        frequency: Some(frequency_fit(&f.params, s)),
        misfit: None,
    })
}

/// Fits, checks and selects as `nudge models fit` does, and prints the table (visible with --nocapture).
fn select(name: &str, tx: Vec<Transaction>) -> (Vec<FamilyCheck>, Selection) {
    let s = summarize(&tx, CAL, Some(END), TimeUnit::W).unwrap();
    let mut checks: Vec<FamilyCheck> =
        [check::<BgNbd>(&tx, &s), check::<MbgNbd>(&tx, &s), check::<ParetoNbd>(&tx, &s)]
            .into_iter()
            .flatten()
            .collect();
    assert_eq!(checks.len(), 3, "{name}: every family fits");
    assess(&mut checks, &MisfitRules::default());
    let sel = select_family(&checks);
    eprintln!("== {name}: selected {} ({})", sel.selected, sel.because);
    for c in &checks {
        eprintln!(
            "  {:<11} holdout {:+6.1}%  LL/customer {:.5}  tracking {:+6.1}%  chi2 {:9.1}  converged {}  misfit {:?}",
            c.model,
            100.0 * c.holdout_error.unwrap(),
            c.holdout_log_score.unwrap(),
            100.0 * c.tracking.as_ref().unwrap().max_relative_deviation,
            c.frequency.as_ref().unwrap().chi_square,
            c.trusted,
            c.misfit
        );
    }
    (checks, sel)
}

/// The selection's guarantees: the selected family is no misfit (unless all are), every family off by more
/// than the tracking bound is misfit, and the selected family's holdout total is within 1.5× of the best
/// error among the families not refused, or within 5 %.
fn assert_sound(name: &str, checks: &[FamilyCheck], sel: &Selection) {
    let bound = MisfitRules::default().max_tracking_deviation;
    for c in checks {
        let dev = c.tracking.as_ref().unwrap().max_relative_deviation.abs();
        assert_eq!(dev > bound, c.misfit.as_deref().is_some_and(|m| m.contains("tracking")), "{name}: {c:?}");
    }
    let chosen = checks.iter().find(|c| c.model == sel.selected).unwrap();
    let usable: Vec<&FamilyCheck> = checks.iter().filter(|c| c.misfit.is_none()).collect();
    assert_eq!(sel.misfit, usable.is_empty(), "{name}");
    assert!(chosen.misfit.is_none() || usable.is_empty(), "{name}: a misfit family was selected");
    let best = usable.iter().map(|c| c.holdout_error.unwrap().abs()).fold(f64::INFINITY, f64::min);
    let err = chosen.holdout_error.unwrap().abs();
    assert!(err <= (1.5 * best).max(0.05), "{name}: holdout error {err} against the best candidate's {best}");
}

#[test]
fn bgnbd_process() {
    let tx = simulate_bgnbd(&Simulation {
        model: BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 },
        spend: None,
        customers: CUSTOMERS,
        first_day: FIRST,
        acquisition_days: 84,
        observation_end: END,
        unit: TimeUnit::W,
        seed: 7,
    })
    .unwrap();
    let (checks, sel) = select("BG/NBD process", tx);
    assert_sound("BG/NBD process", &checks, &sel);
    assert_eq!(sel.selected, "bgnbd");
    assert!(sel.because.contains("holdout log-likelihood"), "{}", sel.because);
}

#[test]
fn pareto_nbd_process() {
    let tx = simulate_pareto_nbd(&ParetoSimulation {
        model: ParetoNbd { r: 0.55, alpha: 10.6, s: 0.61, beta: 11.7 },
        spend: None,
        customers: CUSTOMERS,
        first_day: FIRST,
        acquisition_days: 84,
        observation_end: END,
        unit: TimeUnit::W,
        seed: 8,
    })
    .unwrap();
    let (checks, sel) = select("Pareto/NBD process", tx);
    assert_sound("Pareto/NBD process", &checks, &sel);
    // MBG/NBD and Pareto/NBD describe this data about equally well; BG/NBD, with no dropout before the
    // first repeat purchase, does not.
    assert_ne!(sel.selected, "bgnbd");
}

fn capped(p0: f64, max_purchases: u32, r: f64, alpha: f64) -> Vec<Transaction> {
    simulate_capped_dropout(&CappedSimulation {
        r,
        alpha,
        a: 1.0,
        b: 3.0,
        p0,
        max_purchases,
        spend: None,
        customers: CUSTOMERS,
        first_day: FIRST,
        acquisition_days: 90,
        observation_end: END,
        unit: TimeUnit::W,
        seed: 9,
    })
    .unwrap()
}

#[test]
fn capped_dropout_process() {
    let tx = capped(0.2, 10, 2.0, 10.0);
    let (checks, sel) = select("capped dropout process", tx);
    assert_sound("capped dropout process", &checks, &sel);
}

#[test]
fn capped_dropout_process_with_half_one_off_buyers_is_misfit_for_every_family() {
    let tx = capped(0.5, 4, 1.0, 4.0);
    let (checks, sel) = select("capped dropout, half one-off buyers", tx);
    assert_sound("capped dropout, half one-off buyers", &checks, &sel);
    let refused: Vec<&str> = checks.iter().filter(|c| c.misfit.is_some()).map(|c| c.model.as_str()).collect();
    // Every family's calibration tracking is off by more than the bound on this store: the selection says
    // so, and such a version is neither activated nor served without --force.
    assert_eq!(refused.len(), 3, "{checks:?}");
    assert!(sel.misfit);
    assert!(sel.because.contains("every family is MISFIT"), "{}", sel.because);
    assert!(sel.because.contains("misfit: calibration tracking off by"), "{}", sel.because);
}
