//! The send-time quality bars on the simulator: at 5 observed opens per customer, the learned hour's open
//! rate is within 90 % of the oracle's and above the population's single best hour.

use nudge_decide::sim::{SimArgs, send_time};

#[test]
fn the_learned_hour_is_within_90_percent_of_the_oracle_and_beats_the_population_hour() {
    for seed in [1, 2] {
        let r = send_time::evaluate(&SimArgs { customers: 2_000, days: 180, seed });
        eprintln!("{}", r.text);
        let j = &r.json;
        let learned = j["learned_open_rate"].as_f64().expect("the model fits");
        let oracle = j["oracle_open_rate"].as_f64().unwrap();
        let population = j["population_open_rate"].as_f64().unwrap();
        assert!(learned >= 0.9 * oracle, "seed {seed}: learned {learned} < 90 % of oracle {oracle}");
        assert!(learned > population, "seed {seed}: learned {learned} <= population {population}");
    }
}
