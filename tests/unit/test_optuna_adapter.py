"""What Trad uses of optuna beyond its public API still works in the optuna installed;
this fails first when optuna moves it (app/optimize/optuna_adapter.py)."""
from importlib.metadata import version

import optuna
from packaging.specifiers import SpecifierSet

from app.optimize import optuna_adapter as adapter


def test_the_installed_optuna_is_in_the_range_the_adapter_is_written_for():
    assert version("optuna") in SpecifierSet(",".join(adapter.OPTUNA_RANGE))


def test_study_system_attributes_are_set_and_read_back():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    adapter.set_study_system_attr(study, "trad:state", {"mean": [1.0, 2.0]})
    assert adapter.study_system_attrs(study)["trad:state"] == {"mean": [1.0, 2.0]}


def test_a_samplers_trial_system_attributes_are_read_back():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.NSGAIISampler(seed=1, population_size=4))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    attrs = adapter.trial_system_attrs(study, trial)
    assert isinstance(attrs, dict)
    assert any("generation" in key for key in attrs)


def test_the_table_models_the_bulk_copy_writes_through_are_there():
    from optuna.storages._rdb import models

    for model, columns in ((models.TrialModel, {"number", "study_id", "state", "datetime_start",
                                                "datetime_complete", "trial_id"}),
                           (models.TrialParamModel, {"trial_id", "param_name", "distribution_json",
                                                     "param_value"}),
                           (models.TrialValueModel, {"trial_id", "objective", "value", "value_type"}),
                           (models.TrialUserAttributeModel, {"trial_id", "key", "value_json"})):
        assert columns <= set(model.__table__.columns.keys()), model
    assert callable(models.TrialValueModel.value_to_stored_repr)
