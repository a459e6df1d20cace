"""Known answers for the CLV models (tierflow.clv.model) against an independent reference.

The reference is the `lifetimes` library (BetaGeoFitter, GammaGammaFitter without a
penalizer: maximum likelihood). tierflow fits the same models with pymc-marketing (MAP with
flat priors, which is the maximum-likelihood point too), so on the same summary both must give
the same parameters and the same per-customer predictions, up to the optimizers' tolerances:

- parameters within 2% (relative): both stop at their optimizer's tolerance on a flat-ish
  likelihood of 40 customers; a, b move together along a ridge, so their ratio is tighter;
- per-customer predictions (P(alive), expected purchases, spend, CLV) within 0.5%: these are
  what the tiers use, and they are far better determined than the parameters.

The summary: 40 customers observed for 180 days (T = 180), drawn once from lifetimes' BG/NBD
generator (np.random.seed(19), r=0.5, alpha=10, a=1, b=3) and written out below as literals,
with a hand-made mean repeat value per customer.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

# (frequency, recency, T) of 40 customers
SUMMARY = [
    (8, 148, 180), (0, 0, 180), (2, 77, 180), (6, 103, 180), (2, 107, 180), (2, 126, 180),
    (0, 0, 180), (3, 170, 180), (5, 17, 180), (1, 68, 180), (2, 167, 180), (2, 30, 180),
    (21, 178, 180), (0, 0, 180), (5, 167, 180), (1, 14, 180), (1, 88, 180), (1, 4, 180),
    (2, 15, 180), (0, 0, 180), (0, 0, 180), (0, 0, 180), (1, 50, 180), (0, 0, 180),
    (2, 99, 180), (2, 160, 180), (4, 100, 180), (1, 53, 180), (1, 17, 180), (2, 28, 180),
    (2, 26, 180), (3, 159, 180), (3, 8, 180), (4, 171, 180), (1, 30, 180), (1, 113, 180),
    (0, 0, 180), (17, 173, 180), (2, 105, 180), (3, 26, 180),
]
# mean value of the repeat purchase days, hand-made: 40, 60, 80, ... cycling by customer
# position (0 for customers without repeat purchases, as in customer_rfm)
VALUES = [0.0 if f == 0 else 40.0 + 20.0 * (i % 5) for i, (f, _, _) in enumerate(SUMMARY)]


def _summary() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"C{i:02d}" for i in range(len(SUMMARY))],
        "frequency": [f for f, _, _ in SUMMARY],
        "recency": [float(r) for _, r, _ in SUMMARY],
        "T": [float(t) for _, _, t in SUMMARY],
        "monetary_value": VALUES,
        "spend_ok": [True] * len(SUMMARY),
    })


@pytest.fixture(scope="module")
def fitted():
    lifetimes = pytest.importorskip("lifetimes")
    from tierflow.clv.model import fit_bg_nbd, fit_gamma_gamma

    summary = _summary()
    bg, gg = fit_bg_nbd(summary), fit_gamma_gamma(summary)
    ref_bg = lifetimes.BetaGeoFitter(penalizer_coef=0.0).fit(summary.frequency, summary.recency, summary["T"])
    repeat = summary[summary.frequency > 0]
    ref_gg = lifetimes.GammaGammaFitter(penalizer_coef=0.0).fit(repeat.frequency, repeat.monetary_value)
    return summary, bg, gg, ref_bg, ref_gg


def test_parameters_match_lifetimes(fitted) -> None:
    summary, bg, gg, ref_bg, ref_gg = fitted
    assert bg.converged and gg.converged, (bg.note, gg.note)
    assert bg.n_customers == 40
    assert gg.n_customers == sum(f > 0 for f, _, _ in SUMMARY) == 32
    for name in ("r", "alpha"):
        assert bg.parameters[name] == pytest.approx(ref_bg.params_[name], rel=0.02), name
    # a and b: the ratio a / (a + b) (the mean dropout probability) is what the data pin down
    ours = bg.parameters["a"] / (bg.parameters["a"] + bg.parameters["b"])
    ref = ref_bg.params_["a"] / (ref_bg.params_["a"] + ref_bg.params_["b"])
    assert ours == pytest.approx(ref, rel=0.01)
    for name in ("a", "b"):
        assert bg.parameters[name] == pytest.approx(ref_bg.params_[name], rel=0.05), name
    for name in ("p", "q", "v"):
        assert gg.parameters[name] == pytest.approx(ref_gg.params_[name], rel=0.02), name


def test_predictions_match_lifetimes(fitted) -> None:
    from tierflow.clv.model import score

    summary, bg, gg, ref_bg, ref_gg = fitted
    ours = score(summary, bg.parameters, gg.parameters, horizon_months=12, monthly_discount_rate=0.01)
    f, r, t, m = summary.frequency, summary.recency, summary["T"], summary.monetary_value
    expected_alive = ref_bg.conditional_probability_alive(f, r, t)
    np.testing.assert_allclose(ours.probability_alive, expected_alive, rtol=5e-3)
    for days, column in ((90, "expected_purchases_90d"), (365, "expected_purchases_365d")):
        ref = ref_bg.conditional_expected_number_of_purchases_up_to_time(days, f, r, t)
        np.testing.assert_allclose(ours[column], ref, rtol=5e-3)
    # lifetimes' conditional expected average profit at frequency 0 is the population mean p v/(q-1)
    np.testing.assert_allclose(ours.expected_avg_value, ref_gg.conditional_expected_average_profit(f, m),
                               rtol=5e-3)
    ref_clv = ref_gg.customer_lifetime_value(ref_bg, f, r, t, m, time=12, discount_rate=0.01, freq="D")
    np.testing.assert_allclose(ours.predicted_clv_12m, ref_clv, rtol=5e-3)


def test_no_repeat_purchase_is_alive_for_sure(fitted) -> None:
    """BG/NBD lets a customer drop out only right after a repeat purchase: with none, the
    closed form P(alive | x = 0) = 1 / (1 + 0) = 1, whatever the parameters."""
    from tierflow.clv.model import score

    summary, bg, gg, _, _ = fitted
    ours = score(summary, bg.parameters, gg.parameters, horizon_months=12, monthly_discount_rate=0.01)
    no_repeat = ours[summary.frequency.to_numpy() == 0]
    assert len(no_repeat) == 8
    assert (no_repeat.probability_alive == 1.0).all()
    # and the 21-purchase customer seen 2 days ago is almost surely alive, the 5-purchase
    # customer last seen on day 17 of 180 almost surely not
    assert ours.probability_alive[12] > 0.95 and ours.probability_alive[8] < 0.2


def test_nonpositive_repeat_values_are_left_out_of_the_spend_model() -> None:
    from tierflow.clv.model import fit_gamma_gamma, spend_rows

    summary = _summary()
    summary.loc[3, "spend_ok"] = False  # a repeat purchase day of C03 had revenue <= 0
    summary.loc[4, "monetary_value"] = 0.0
    # out: the 8 customers without repeat purchases, C03 and C04
    assert list(summary.customer_id[~spend_rows(summary)]) == [
        "C01", "C03", "C04", "C06", "C13", "C19", "C20", "C21", "C23", "C36"
    ]
    assert fit_gamma_gamma(summary).n_customers == 30


def test_holdout_comparison_by_hand() -> None:
    from tierflow.clv.model import holdout_comparison

    freq = np.array([0, 0, 1, 3, 9])
    predicted = np.array([0.2, 0.3, 1.0, 2.5, 6.0])
    actual = np.array([0, 1, 1, 2, 7])
    rows, error = holdout_comparison(freq, predicted, actual)
    # buckets 0: 0.5 vs 1, 1: 1.0 vs 1, 3: 2.5 vs 2, 7+: 6.0 vs 7
    assert rows == [
        {"bucket": "0", "customers": 2, "predicted": 0.5, "actual": 1},
        {"bucket": "1", "customers": 1, "predicted": 1.0, "actual": 1},
        {"bucket": "3", "customers": 1, "predicted": 2.5, "actual": 2},
        {"bucket": "7+", "customers": 1, "predicted": 6.0, "actual": 7},
    ]
    # (0.5 + 0 + 0.5 + 1.0) / 11 = 0.1818
    assert error == pytest.approx(2.0 / 11, abs=1e-4)
    assert holdout_comparison(freq, predicted, np.zeros(5))[1] is None
    assert not math.isnan(error)


def _simulated_summary(n: int, seed: int) -> pd.DataFrame:
    """BG/NBD's own story for ``n`` customers (r=2.5, alpha=90, a=0.35, b=26, the demo's
    neighbourhood): a purchase rate from Gamma(r, alpha), a dropout chance from Beta(a, b)
    after each repeat purchase, observed for 30..639 days."""
    rng = np.random.default_rng(seed)
    rate, dropout = rng.gamma(2.5, 1 / 90.0, n), rng.beta(0.35, 26.0, n)
    observed = rng.integers(30, 640, n)
    frequency, recency = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    for i in range(n):
        t = rng.exponential(1 / rate[i])
        while t <= observed[i]:
            frequency[i], recency[i] = frequency[i] + 1, int(t)
            if rng.random() < dropout[i]:
                break
            t += rng.exponential(1 / rate[i])
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "frequency": frequency,
        "recency": recency,
        "T": observed,
    })


def test_a_fit_on_many_customers_is_taken_to_the_maximum() -> None:
    """On 10,000 customers the optimizer's default stop (a tiny relative change of the
    log-likelihood) leaves a gradient the convergence check rejects, so a fit would be
    rejected night after night; tierflow's fit stops on the gradient itself."""
    import warnings

    from tierflow.clv.model import BG_PARAMS, _bg_frame, _check, _clv_module, fit_bg_nbd

    summary = _simulated_summary(10_000, seed=2)
    prior, beta_geo, _ = _clv_module()
    shipped = beta_geo(model_config={k: prior("HalfFlat") for k in BG_PARAMS})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shipped.fit(data=_bg_frame(summary), method="map", progressbar=False)
    _, converged, note = _check(shipped, BG_PARAMS, len(summary))
    assert not converged and note.startswith("gradient"), "the case no longer shows the default stop"

    fit = fit_bg_nbd(summary)
    assert fit.converged, fit.note
    # near the parameters the customers were drawn from (a and b trade off along a ridge)
    assert fit.parameters["r"] == pytest.approx(2.5, rel=0.1)
    assert fit.parameters["alpha"] / fit.parameters["r"] == pytest.approx(36.0, rel=0.05)
    assert fit.parameters["a"] / (fit.parameters["a"] + fit.parameters["b"]) == pytest.approx(
        0.35 / 26.35, rel=0.2
    )


def _library_score(summary: pd.DataFrame, bg: dict, gg: dict, months: int, rate: float) -> pd.DataFrame:
    """The same scores from pymc-marketing's own model objects (holding the point as their
    one-draw posterior) and its ``customer_lifetime_value``: the reference for tierflow's numpy
    scoring. The spend of a customer outside the spend model is the population mean: the
    library's conditional mean at frequency 0."""
    import warnings

    import arviz as az
    from pymc_marketing.clv.utils import customer_lifetime_value
    from tierflow.clv.model import BG_PARAMS, _clv_module, spend_rows

    prior, beta_geo, gamma_gamma = _clv_module()

    def with_point(model, frame, params):
        model.build_model(data=frame)
        model.idata = az.from_dict(posterior={k: np.array([[v]]) for k, v in params.items()})
        return model

    frame = summary[["customer_id", "frequency", "recency", "T"]].reset_index(drop=True)
    in_spend = spend_rows(summary).to_numpy()
    spend = summary[["customer_id", "frequency", "monetary_value"]].reset_index(drop=True)
    spend.loc[~in_spend, "frequency"] = 0
    spend.loc[~in_spend, "monetary_value"] = 1.0
    bg_model = with_point(beta_geo(model_config={k: prior("HalfFlat") for k in BG_PARAMS}), frame, bg)
    gg_model = with_point(gamma_gamma(), spend, gg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        avg_value = gg_model.expected_customer_spend(spend).values.reshape(-1)
        clv = customer_lifetime_value(
            bg_model, frame.assign(future_spend=avg_value), future_t=months, discount_rate=rate, time_unit="D"
        ).values.reshape(-1)
        return pd.DataFrame({
            "probability_alive": bg_model.expected_probability_alive(frame).values.reshape(-1),
            "expected_purchases_90d": bg_model.expected_purchases(frame, future_t=90).values.reshape(-1),
            "expected_purchases_365d": bg_model.expected_purchases(frame, future_t=365).values.reshape(-1),
            "expected_avg_value": avg_value,
            "predicted_clv_12m": clv,
        })


@pytest.mark.parametrize("rate", [0.01, 0.0])
def test_numpy_scores_are_the_librarys(rate: float) -> None:
    """tierflow scores with the library's closed forms in numpy (no pymc on a night that reuses
    a fit): the same numbers as pymc-marketing's own methods, customer by customer, on the 40
    customers (one outside the spend model) and on 2,000 simulated ones."""
    from tierflow.clv.model import score

    bg = {"r": 2.44, "alpha": 85.3, "a": 0.281, "b": 18.9}
    gg = {"p": 0.948, "q": 1.275, "v": 4071.5}
    small = _summary()
    small.loc[3, "spend_ok"] = False
    simulated = _simulated_summary(2_000, seed=5)
    simulated = simulated.assign(
        monetary_value=np.where(simulated.frequency > 0, 20.0 + (np.arange(len(simulated)) % 7) * 15.0, 0.0),
        spend_ok=np.arange(len(simulated)) % 11 != 0,
    )
    for summary in (small, simulated):
        ours = score(summary, bg, gg, horizon_months=12, monthly_discount_rate=rate)
        ref = _library_score(summary, bg, gg, 12, rate)
        assert (~ours.in_spend_model).sum() > 0
        for column in ref.columns:
            np.testing.assert_allclose(
                ours[column].to_numpy(), ref[column].to_numpy(), rtol=1e-9, err_msg=column
            )
