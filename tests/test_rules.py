"""Every claim's rule, fed synthetic evidence: shaped like the paper's result it is supported; like a null
model (the effect absent) it is refuted at a faithful tier and never refuted at a proxy tier; with any one
premise failed in one seed it is inconclusive whatever the criteria say.

The paper-like values are the papers' own figures where the claims cite them (sources beside each); the
null values are what a model without the effect gives.  Each claim's seeds are its full-tier count, and the
values vary a little from seed to seed (a fixed pattern), as real seeds do.
"""

from __future__ import annotations

import math

import pytest

from theorylab.claims import claim_ids, get_claim

# claim id -> (paper-like values, null values, what the null gives at a faithful tier)
EVIDENCE: dict[str, tuple[dict[str, float], dict[str, float], str]] = {
    # Bietti et al. 2023, Fig. 3: the two-layer model predicts the second occurrence of a trigger's output
    # almost always, the first only at the bigram rate; its second-layer head copies the triggered token
    "bietti2023.induction_from_triggers": (
        {"icl_accuracy": 0.99, "icl_minus_first_accuracy": 0.85, "probe_induction_output": 0.95,
         "bigram_excess_loss": 0.02},
        {"icl_accuracy": 0.10, "icl_minus_first_accuracy": 0.0, "probe_induction_output": 0.05,
         "bigram_excess_loss": 0.02}, "refuted"),
    # Besiroglu et al. 2024, Table 1: the refit lands on their estimates (well within one SE) and Hoffmann's
    # rounded parameters sit at chi-squared 238.4 from it
    "besiroglu2024.chinchilla_refit": (
        {"max_dev_in_se": 0.1, "chi2_hoffmann": 238.4, "points_match": 1.0, "bootstrap_finite": 1.0},
        {"max_dev_in_se": 5.0, "chi2_hoffmann": 2.0, "points_match": 1.0, "bootstrap_finite": 1.0}, "refuted"),
    # Bu et al. 2024, Theorem 1 and Fig. 2: the 0-1 error falls exponentially to the Bayes error
    "bu2024.exponential_convergence": (
        {"rate_per_1k": 5.0, "fit_r2": 0.95, "excess_error": 0.01, "below_context_free": 0.14},
        {"rate_per_1k": -2.0, "fit_r2": 0.1, "excess_error": 0.3, "below_context_free": 0.14}, "refuted"),
    # Bu et al. 2024, section 5: out-of-distribution prompts are answered near the Bayes error
    "bu2024.ood_generalization": (
        {"ood_short_error01": 0.02, "ood_long_error01": 0.01, "ood_skewed_error01": 0.02,
         "ood_switched_error01": 0.03, "below_context_free": 0.14, "excess_error": 0.005},
        {"ood_short_error01": 0.45, "ood_long_error01": 0.5, "ood_skewed_error01": 0.4, "ood_switched_error01": 0.5,
         "below_context_free": 0.14, "excess_error": 0.005}, "refuted"),
    # Chiang & Cholak 2022, section 6: with log-length scaling FIRST is learned at n = 50 and stays exact at
    # n = 1000, while the unscaled model's cross-entropy rises with n
    "chiang2022.first_log_length_training": (
        {"acc_scaled_at_max_n": 1.0, "ce_ratio_at_max_n": 20.0, "ce_plain_rise": 0.4,
         "acc_plain_at_train_n": 1.0, "acc_scaled_at_train_n": 1.0},
        {"acc_scaled_at_max_n": 0.6, "ce_ratio_at_max_n": 1.0, "ce_plain_rise": 0.0,
         "acc_plain_at_train_n": 1.0, "acc_scaled_at_train_n": 1.0}, "refuted"),
    # Chiang & Cholak 2022, Table 1: the layer-norm PARITY construction keeps cross-entropy 0.0598 bits at every n
    "chiang2022.layernorm_escapes": (
        {"ce_at_max_n": 0.0598, "ce_change_over_n": 0.0, "sensitivity_slope": 0.0, "accuracy_min": 1.0},
        {"ce_at_max_n": 0.9, "ce_change_over_n": 0.5, "sensitivity_slope": -1.0, "accuracy_min": 1.0}, "refuted"),
    # Chiang & Cholak 2022, section 5: FIRST without scaling tends to 1 bit; with log n scaling it stays put
    "chiang2022.log_length_first": (
        {"ce_plain_at_max_n": 0.999, "ce_log_change_over_n": 0.0, "accuracy_min": 1.0},
        {"ce_plain_at_max_n": 0.3, "ce_log_change_over_n": 0.3, "accuracy_min": 1.0}, "refuted"),
    # Czech et al. 2026: exponent exact, intercept -0.578092 against -0.555357 at +-16x, none when alpha = beta
    "czech2026.approach2_intercept_bias": (
        {"b_error": 0.0, "max_published_gap": 0.0, "bias_widest": 0.022735, "bias_grows": 1.0,
         "symmetric_bias": 0.0, "budgets_fitted": 1.0, "points_on_surface": 1.0},
        {"b_error": 0.01, "max_published_gap": 0.02, "bias_widest": 0.0, "bias_grows": 0.0,
         "symmetric_bias": 0.01, "budgets_fitted": 1.0, "points_on_surface": 1.0}, "refuted"),
    # Delétang et al. 2023, Table 2: the best Transformer seed scores 62.3 / 57.5 / 52.8 / 56.4% on the four
    # non-regular tasks while fitting the training lengths; bucket_sort, the positive control, 91.9%
    "deletang2023.no_length_generalization": (
        {"score_reverse_string": 0.62, "score_stack_manipulation": 0.575, "score_duplicate_string": 0.53,
         "score_missing_duplicate": 0.56, "iid_reverse_string": 1.0, "iid_stack_manipulation": 0.99,
         "iid_duplicate_string": 0.99, "iid_missing_duplicate": 0.98, "score_control": 0.919},
        {"score_reverse_string": 0.99, "score_stack_manipulation": 0.97, "score_duplicate_string": 0.98,
         "score_missing_duplicate": 0.96, "iid_reverse_string": 1.0, "iid_stack_manipulation": 0.99,
         "iid_duplicate_string": 0.99, "iid_missing_duplicate": 0.98, "score_control": 0.919}, "refuted"),
    # Delétang et al. 2023, Table 2 (52.0%) and Bhattamishra et al. 2020: PARITY at chance on longer strings
    "deletang2023.parity_every_encoding": (
        {**{f"score_{e}": 0.52 for e in ("none", "sinusoidal", "learned", "rotary", "alibi")},
         **{f"iid_{e}": 0.99 for e in ("none", "sinusoidal", "learned", "rotary", "alibi")}, "score_control": 0.919},
        {**{f"score_{e}": 0.95 for e in ("none", "sinusoidal", "learned", "rotary", "alibi")},
         **{f"iid_{e}": 0.99 for e in ("none", "sinusoidal", "learned", "rotary", "alibi")}, "score_control": 0.919},
        "refuted"),
    # Garg et al. 2022, Fig. 2: past d examples the error (normalised by d) is about 0, as least squares'
    "garg2022.tracks_least_squares": (
        {"err_transformer": 0.002, "ratio_to_averaging": 0.005, "loss_tail_change": 0.001},
        {"err_transformer": 0.5, "ratio_to_averaging": 0.8, "loss_tail_change": 0.001}, "refuted"),
    # Hahn 2020, Lemma 5: per-bit sensitivity O(1/n), cross-entropy tending to 1 bit
    "hahn2020.soft_attention_sensitivity": (
        {"slope_no_ln": -1.9, "slope_ln_eps": -1.9, "ce_no_ln_at_max_n": 0.9998, "accuracy_no_ln_min": 1.0},
        {"slope_no_ln": -0.1, "slope_ln_eps": 0.0, "ce_no_ln_at_max_n": 0.2, "accuracy_no_ln_min": 1.0}, "refuted"),
    # Hahn 2020, Theorem 1: no unique-hard-attention transformer decides PARITY at long lengths
    "hahn2020.unique_hard_attention_bounded": (
        {"construction_accuracy_at_max_n": 0.51, "search_best_accuracy_at_max_n": 0.54,
         "control_accuracy_at_max_n": 1.0, "control_sensitivity_slope": 1.0},
        {"construction_accuracy_at_max_n": 1.0, "search_best_accuracy_at_max_n": 1.0,
         "control_accuracy_at_max_n": 1.0, "control_sensitivity_slope": 1.0}, "refuted"),
    # Hoffmann et al. 2022, eq. 2: the additive law fits to within noise and predicts the held-out runs
    "hoffmann2022.additive_power_law": (
        {"rms_residual": 0.004, "oos_max_rel_error": 0.008, "runs_finished": 1.0, "loss_span": 0.9},
        {"rms_residual": 0.05, "oos_max_rel_error": 0.1, "runs_finished": 1.0, "loss_span": 0.9}, "refuted"),
    # Hoffmann et al. 2022, section 3.3: E is the entropy of the data (here known: the PCFG's rate)
    "hoffmann2022.irreducible_loss_is_entropy": (
        {"E_minus_floor": 0.01, "gap_change": -0.02, "runs_finished": 1.0, "loss_span": 0.9, "E_ci_width": 0.05,
         "closest_to_floor": 0.002},
        {"E_minus_floor": 0.3, "gap_change": 0.1, "runs_finished": 1.0, "loss_span": 0.9, "E_ci_width": 0.05,
         "closest_to_floor": 0.002},
        "refuted"),
    # Schaeffer et al. 2023, §2-3: exact match is p^L of a smooth per-token accuracy; edit distance is smooth
    "schaeffer2023.metric_mirage": (
        {"prediction_error": 0.01, "continuous_sharp": 0.0, "runs_finished": 1.0, "exact_min": 0.0,
         "exact_max": 1.0, "exact_sharp": 1.0},
        {"prediction_error": 0.3, "continuous_sharp": 2.0, "runs_finished": 1.0, "exact_min": 0.0,
         "exact_max": 1.0, "exact_sharp": 1.0}, "refuted"),
    # Schaeffer et al. 2023, §2 third prediction: p^8 reaches 1/2 several times later in N than p^2
    "schaeffer2023.longer_answers_sharper": (
        {"threshold_ratio": 4.0, "runs_finished": 1.0, "exact_min": 0.0, "exact_max": 1.0},
        {"threshold_ratio": 1.0, "runs_finished": 1.0, "exact_min": 0.0, "exact_max": 1.0}, "refuted"),
    # Lubana et al. 2025, §4: grammar first, the type constraints later and together
    "lubana2025.grammar_before_types": (
        {"types_after_grammar": 3.0, "runs_finished": 1.0, "grammar_learned": 0.85, "types_rose": 0.6, "types_settled": 0.95},
        {"types_after_grammar": 1.0, "runs_finished": 1.0, "grammar_learned": 0.85, "types_rose": 0.6, "types_settled": 0.95}, "refuted"),
    "lubana2025.type_constraints_together": (
        {"types_apart": 1.1, "runs_finished": 1.0, "grammar_learned": 0.85, "types_rose": 0.6, "types_settled": 0.95},
        {"types_apart": 4.0, "runs_finished": 1.0, "grammar_learned": 0.85, "types_rose": 0.6, "types_settled": 0.95}, "refuted"),
    # Lubana et al. 2025, §5: the emergence step scales like |K|^(1/2) (the bipartite percolation threshold)
    "lubana2025.emergence_scales_sqrt_k": (
        {"slope_desc": 0.5, "runs_finished": 1.0, "types_rose": 0.6, "types_settled": 0.95, "transition_steps_measured": 3.0},
        {"slope_desc": 0.0, "runs_finished": 1.0, "types_rose": 0.6, "types_settled": 0.95, "transition_steps_measured": 3.0}, "refuted"),
    # the random-graph view of multi-step reasoning: k-hop accuracy ~0 below c = 1, high above, steeper for more hops
    "erdos1960.msra_lecture_multi_hop": (
        {"multi_hop_below": 0.05, "multi_hop_above": 0.8, "onset_slope_ratio": 2.0, "runs_finished": 1.0,
         "fitted_at_full": 0.99, "subcritical_runs": 3.0, "supercritical_runs": 4.0, "false_edge_max": 0.02},
        {"multi_hop_below": 0.5, "multi_hop_above": 0.3, "onset_slope_ratio": 1.0, "runs_finished": 1.0,
         "fitted_at_full": 0.99, "subcritical_runs": 3.0, "supercritical_runs": 4.0, "false_edge_max": 0.02},
        "refuted"),
    # Rafailov et al. 2023, Theorem 1 (SETUPS §6.2 measured TV 2.7e-12 on one problem); null: a fit that misses pi*
    "rafailov2023.dpo_optimum_is_pi_star": (
        {"tv_max": 2.7e-12, "tv_cut_min": 0.05}, {"tv_max": 0.2, "tv_cut_min": 0.05}, "refuted"),
    # Rafailov et al. 2023, Figure 2: DPO's and PPO's policies on the reward-KL frontier; null: off it and off pi*
    "rafailov2023.frontier": (
        {"tv_max": 0.02, "gap_max": 0.01, "reference_fit": 1.0, "tail_max": 0.01},
        {"tv_max": 0.3, "gap_max": 0.6, "reference_fit": 1.0, "tail_max": 0.01}, "refuted"),
    # Azar et al. 2024, §4.2: DPO's loss ~ 1/t with no floor, IPO at sigmoid(1/(2 beta)); null: a finite optimum
    "azar2024.dpo_has_no_finite_optimum": (
        {"loss_slope_err_max": 0.01, "pi_l_decade_ratio_max": 0.1, "ipo_err_max": 1e-15, "pi_l_first_max": 1e-3},
        {"loss_slope_err_max": 1.0, "pi_l_decade_ratio_max": 1.0, "ipo_err_max": 0.1, "pi_l_first_max": 1e-3},
        "refuted"),
    # Azar et al. 2024, §4.2 and §5: DPO ignores beta on deterministic labels, IPO does not; null: DPO regularised
    "azar2024.ipo_stays_regularised": (
        {"dpo_kl_frac_min": 0.95, "dpo_unsettled": 1.0, "ipo_kl_frac_max": 0.03, "reference_fit": 1.0},
        {"dpo_kl_frac_min": 0.3, "dpo_unsettled": 0.0, "ipo_kl_frac_max": 0.03, "reference_fit": 1.0}, "refuted"),
    # Giannou et al. 2023: the looped construction is exact; null: a step differs
    "giannou2023.looped_transformer_executes_subleq": (
        {"mismatched_steps": 0.0, "steps_checked": 10100.0}, {"mismatched_steps": 3.0, "steps_checked": 10100.0},
        "refuted"),
    # error correction: the exact sharpness is 1.558 at 10 and 1,000 loops; null: leakage accumulates
    "giannou2023.error_correction_stops_leakage": (
        {"sharpness_growth": -1.0, "exact_at_default": 1.0}, {"sharpness_growth": 40.0, "exact_at_default": 1.0},
        "refuted"),
    # the trained gap: single steps right, long programs lost (the re-implementation's motivation); null: no decay
    "giannou2023.learned_execution_decays_with_length": (
        {"rollout_decay": 0.4, "construction_mismatches": 0.0, "single_step": 0.99},
        {"rollout_decay": 0.0, "construction_mismatches": 0.0, "single_step": 0.99}, "refuted"),
    # Perez et al. 2021: exact in rationals; float divergence grows with precision; null: floats never diverge later
    "perez2021.exact_simulation_needs_precision": (
        {"exact_mismatches": 0.0, "growth_16_to_32": 11.0, "growth_32_to_64": 6.5, "float32_diverged": 1.0},
        {"exact_mismatches": 2.0, "growth_16_to_32": 1.0, "growth_32_to_64": 1.0, "float32_diverged": 1.0},
        "refuted"),
    # no positional encoding: pooled outputs invariant to order and repetition; null: they change
    "perez2021.no_positions_no_order": (
        {"largest_change": 2e-15, "control_change": 0.09}, {"largest_change": 0.05, "control_change": 0.09},
        "refuted"),
    # Allen-Zhu & Li 3.1, Fig. 2: 9.7% single vs 96.2% augmented; null: augmentation does not help
    "allenzhu2023a.augmentation_makes_knowledge_extractable": (
        {"single_above_guess": 0.01, "augmented_extraction": 0.962, "memorised_min": 1.0, "qa_fit_min": 1.0},
        {"single_above_guess": 0.01, "augmented_extraction": 0.1, "memorised_min": 1.0, "qa_fit_min": 1.0},
        "refuted"),
    # 3.1 §3 Result 1: mixed training extracts 86.6% on bioS single; null: it does not.  The positive control
    # (mixed training on augmented biographies) extracts in both
    "allenzhu2023a.mixed_training_extracts": (
        {"mixed_extraction": 0.866, "finetuned_above_guess": 0.01, "memorised_min": 1.0, "qa_fit_min": 1.0,
         "mixed_augmented_extraction": 0.95},
        {"mixed_extraction": 0.1, "finetuned_above_guess": 0.01, "memorised_min": 1.0, "qa_fit_min": 1.0,
         "mixed_augmented_extraction": 0.95},
        "refuted"),
    # 3.1 §5.1 and Result 3: multi5 alone 41% and single+permute1 4.4% against single's 9.7%; fullname alone helps
    # (its number is in Fig. 3 only: a 10-point lift stands in for it); the full augmentation 96.2%.  Null: no
    # augmentation alone changes extraction
    "allenzhu2023a.multiplicity_and_fullname_help_alone": (
        {"multi5_gain": 0.313, "fullname_gain": 0.1, "permute_gain": -0.053, "memorised_min": 1.0,
         "qa_fit_min": 1.0, "augmented_extraction": 0.962},
        {"multi5_gain": 0.0, "fullname_gain": 0.0, "permute_gain": 0.0, "memorised_min": 1.0, "qa_fit_min": 1.0,
         "augmented_extraction": 0.962}, "refuted"),
    # 3.1 §5 and SETUPS A.5.2 (a replication): Q-probe 98.8% with augmentation and 12.4% without, where a first-token
    # probe that reads nothing gets about 4.0% at the paper's pools (1/12, 1/200, 1/300, 1/100, 1/263 and New York's
    # 13.7% of companies, 2309.14402 A.1), so 8.4 points above chance; P-probe 100% just before the value (§5.1).
    # Null: augmentation does not move the knowledge to the name
    "allenzhu2023a.augmentation_stores_knowledge_at_the_name": (
        {"q_augmented": 0.988, "q_single_above_chance": 0.084, "memorised_min": 1.0, "p_min": 1.0},
        {"q_augmented": 0.1, "q_single_above_chance": 0.084, "memorised_min": 1.0, "p_min": 1.0}, "refuted"),
    # 3.2: inverse search virtually 0% while forward retrieval works; null: inverse search works
    "allenzhu2023b.inverse_search_fails": (
        {"forward_extraction": 0.95, "inverse_extraction": 0.0, "memorised": 1.0, "inverse_fit": 1.0,
         "forward_fit": 1.0},
        {"forward_extraction": 0.95, "inverse_extraction": 0.6, "memorised": 1.0, "inverse_fit": 1.0,
         "forward_fit": 1.0}, "refuted"),
    # 3.2 §4: with a hint the even month's hint is right 91.0% of the time (footnote 15; both months of a comparison
    # 0.91^2 = 0.83); without one, comparison is "almost random guess" (GPT-4: 52.3%, Result 6; the synthetic
    # models' small-sample numbers are in Fig. 4 only: 3 points stand in for classification).  Null: direct answers
    # as good as the CoT ones (0.9 against a chance of 0.5)
    "allenzhu2023b.manipulation_needs_cot": (
        {"classify_above_chance": 0.03, "compare_above_chance": 0.023, "classify_cot": 0.91, "compare_cot": 0.83,
         "memorised": 1.0, "forward_fit": 1.0, "manipulation_fit_min": 1.0, "forward_extraction": 0.96},
        {"classify_above_chance": 0.4, "compare_above_chance": 0.4, "classify_cot": 0.91, "compare_cot": 0.83,
         "memorised": 1.0, "forward_fit": 1.0, "manipulation_fit_min": 1.0, "forward_extraction": 0.96},
        "refuted"),
    # 3.3: 2 bits per parameter at 1,000 exposures, about 1 at 100; null: 5 bits per parameter, no exposure effect
    "allenzhu2024.two_bits_per_parameter": (
        {"ratio_1000": 2.0, "ratio_100_over_1000": 0.5, "stored_fraction_at_ratio": 0.5},
        {"ratio_1000": 5.0, "ratio_100_over_1000": 1.0, "stored_fraction_at_ratio": 0.5}, "refuted"),
    # Gao et al. 2023, Figure 1: gold reward rises then falls while the proxy rises; null: the gold keeps rising
    "gao2023.overoptimization": (
        {"bon_drop": 0.5, "rl_drop": 0.5, "proxy_monotone": 1.0, "bon_beta_lo": 0.1, "rl_beta_lo": 0.1,
         "proxy_rank": 0.8, "gold_rise_min": 0.3},
        {"bon_drop": 0.0, "rl_drop": 0.0, "proxy_monotone": 1.0, "bon_beta_lo": -0.05, "rl_beta_lo": -0.05,
         "proxy_rank": 0.8, "gold_rise_min": 0.3}, "refuted"),
    # Nanda et al. 2023, section 5: memorization ends near 1.4k epochs, test accuracy reaches 99% near 10k
    "nanda2023.grokking_delay": (
        {"test_reached_99": 1.0, "delay_ratio": 7.0, "memorized": 1.0},
        {"test_reached_99": 1.0, "delay_ratio": 1.1, "memorized": 1.0}, "refuted"),
    # Nanda et al. 2023, Fig. 7: restricted loss falls and excluded loss rises during circuit formation; the
    # weight norm falls and the Fourier Gini rises during cleanup
    "nanda2023.grokking_phases": (
        {"phases_in_order": 1.0, "log10_restricted_drop_circuit": 0.8, "log10_excluded_rise_circuit": 1.0,
         "weight_norm_change_cleanup": -0.3, "gini_change_cleanup": 0.2, "memorized": 1.0, "grokked": 1.0},
        {"phases_in_order": 0.0, "log10_restricted_drop_circuit": -0.1, "log10_excluded_rise_circuit": 0.0,
         "weight_norm_change_cleanup": 0.1, "gini_change_cleanup": -0.05, "memorized": 1.0, "grokked": 1.0},
        "refuted"),
    # Nanda et al. 2023, section 4: 5 key frequencies; the restricted loss leads the test loss
    "nanda2023.key_frequencies": (
        {"n_key_frequencies": 5.0, "restricted_lead": 0.5, "memorized": 1.0, "grokked": 1.0},
        {"n_key_frequencies": 0.0, "restricted_lead": -0.1, "memorized": 1.0, "grokked": 1.0}, "refuted"),
    # Nanda et al. 2023, appendix: without weight decay the model memorizes and never generalizes
    "nanda2023.no_grokking_without_weight_decay": (
        {"reached_99_without_wd": 0.0, "grokked": 1.0, "final_train_acc_without_wd": 1.0},
        {"reached_99_without_wd": 1.0, "grokked": 1.0, "final_train_acc_without_wd": 1.0}, "refuted"),
    # Olsson et al. 2022, section 3: the induction head forms in a sharp drop of the loss at the same time
    "olsson2022.induction_head_forms": (
        {"prefix_matching_final": 0.9, "loss_drop_sharpness": 0.6, "onset_gap_frac": 0.02,
         "accuracy_second_copy": 0.95},
        {"prefix_matching_final": 0.05, "loss_drop_sharpness": 0.1, "onset_gap_frac": 0.5,
         "accuracy_second_copy": 0.95}, "refuted"),
    # Olsson et al. 2022: one-layer attention-only models form no induction head
    "olsson2022.one_layer_no_induction": (
        {"prefix_matching_one_layer": 0.05, "prefix_matching_two_layer": 0.9},
        {"prefix_matching_one_layer": 0.8, "prefix_matching_two_layer": 0.9}, "refuted"),
    # Power et al. 2022, Fig. 1 (right): the steps to generalize grow steeply as the training fraction falls
    "power2022.fraction_delay": (
        {"steps_ratio": 3.0, "large_reached": 1.0},
        {"steps_ratio": 1.0, "large_reached": 1.0}, "refuted"),
    # Power et al. 2022, Fig. 2: with weight decay the model generalizes; without, at this budget, it does not
    "power2022.weight_decay_needed": (
        {"test_acc_wd": 1.0, "test_acc_no_wd": 0.3, "train_acc_no_wd": 1.0},
        {"test_acc_wd": 1.0, "test_acc_no_wd": 1.0, "train_acc_no_wd": 1.0}, "refuted"),
    # Wang et al. 2024 (ALPINE), Fig. 3: test path accuracy falls as the graph grows
    "wang2024.accuracy_falls_with_size": (
        {"accuracy_drop": 0.15, "min_train_path_accuracy": 0.99},
        {"accuracy_drop": -0.05, "min_train_path_accuracy": 0.99}, "refuted"),
    # Wang et al. 2024, section 4: the MLP read-out recovers the adjacency matrix
    "wang2024.learns_adjacency": (
        {"adj_auc": 0.98, "train_path_accuracy": 1.0},
        {"adj_auc": 0.5, "train_path_accuracy": 1.0}, "refuted"),
    # Wang et al. 2024, section 4: the value read-out encodes observed, not true, reachability
    "wang2024.observed_reachability": (
        {"value_auc_obs_minus_true": 0.1, "value_auc_obs_vs_unobs": 0.9, "train_path_accuracy": 1.0},
        {"value_auc_obs_minus_true": -0.1, "value_auc_obs_vs_unobs": 0.3, "train_path_accuracy": 1.0},
        "refuted"),
    # Wang et al. 2024, Fig. 4: pairs that need transitivity are answered far worse
    "wang2024.transitivity_gap": (
        {"accuracy_gap": 0.4, "train_path_accuracy": 1.0},
        {"accuracy_gap": 0.0, "train_path_accuracy": 1.0}, "refuted"),
}

JITTER = (0.0, 0.01, -0.01, 0.005, -0.005, 0.008, -0.008, 0.003, -0.003, 0.006)  # tenths of a percent


def seeds_of(claim_id: str, values: dict[str, float]) -> dict[int, dict[str, float]]:
    """``values`` for each of the claim's full-tier seeds, varied by a small fixed pattern (yes/no outcomes,
    counts and values at 0 or 1 are kept exact)."""
    n = get_claim(claim_id).seeds["full"]

    def vary(x: float, j: float) -> float:
        if x in (0.0, 1.0) or float(x).is_integer():
            return x
        return x * (1 + j / 10)

    return {s: {q: vary(x, JITTER[s % len(JITTER)]) for q, x in values.items()} for s in range(n)}


def test_every_claim_has_rule_evidence_and_premises():
    assert set(EVIDENCE) == set(claim_ids())
    for cid in claim_ids():
        rule = get_claim(cid).rule
        assert rule.premises, f"{cid}: a claim states its premises"
        paper, null, _ = EVIDENCE[cid]
        needed = {c.quantity for c in rule.criteria} | {p.quantity for p in rule.premises}
        assert needed <= set(paper) and needed <= set(null), f"{cid}: evidence lacks {needed - set(paper)}"


@pytest.mark.parametrize("cid", sorted(EVIDENCE))
def test_paper_like_evidence_is_supported(cid):
    d = get_claim(cid).rule.decide(seeds_of(cid, EVIDENCE[cid][0]), faithful=True)
    assert d.verdict == "supported", d.reasons


@pytest.mark.parametrize("cid", sorted(EVIDENCE))
def test_null_evidence_is_refuted_only_at_a_faithful_tier(cid):
    rule = get_claim(cid).rule
    null, expected = seeds_of(cid, EVIDENCE[cid][1]), EVIDENCE[cid][2]
    assert rule.decide(null, faithful=True).verdict == expected
    proxy = rule.decide(null, faithful=False)
    assert proxy.verdict == "inconclusive" and "absent at proxy scale" in proxy.reasons[0]


@pytest.mark.parametrize("cid", sorted(EVIDENCE))
def test_a_failed_premise_makes_any_evidence_inconclusive(cid):
    rule = get_claim(cid).rule
    for which in (0, 1):  # paper-like and null evidence alike
        for p in rule.premises:
            per_seed = seeds_of(cid, EVIDENCE[cid][which])
            bad = p.bound - 0.5 if p.op in (">=", ">") else p.bound + 0.5
            targets = list(per_seed) if p.over == "best" else [0]  # "best": no seed may meet it
            for s in targets:
                per_seed[s][p.quantity] = bad
            d = rule.decide(per_seed, faithful=True)
            assert d.verdict == "inconclusive", (cid, p.name, d.reasons)
            assert d.reasons[0].startswith("premise not met: " + p.name), d.reasons[0]
            per_seed[targets[0]][p.quantity] = math.nan  # a premise not measured is not met either
            assert rule.decide(per_seed, faithful=True).verdict == "inconclusive"


@pytest.mark.parametrize("cid", sorted(EVIDENCE))
def test_the_report_says_which_statistic_judged_each_criterion(cid):
    d = get_claim(cid).rule.decide(seeds_of(cid, EVIDENCE[cid][0]), faithful=True)
    for c, j in zip(get_claim(cid).rule.criteria, d.criteria):
        assert j["stat"] == c.stat and j["statistic"] and j["n"] == get_claim(cid).seeds["full"]
    assert all({"name", "values", "bound", "met"} <= set(p) for p in d.premises)
