"""`SearchResult`: what `search.run` returns, and the lines `keras-relu search` prints."""

import dataclasses


@dataclasses.dataclass
class SearchResult:
    """What a search leaves: the winner, this invocation's trials, where everything is.

    Attributes:
        best: the best trials of the whole study, best first (for `objective="pareto"`,
            the Pareto front by the metric), as `TrialSummary` (config, value,
            val_accuracy, dead_fraction, run_id, model_uri).
        trials: every trial this invocation ran, in the order they ended.
        test_scores: the best model's scores on the held-out test split (evaluated once).
        model_uri: the best model (`models:/m-...`; `best_model()` loads it).
        best_config: the local `best.yaml` (every dimension fixed to the best config).
        study_name, engine, objective, metric: the study.
        storage: where the study lives (a password masked).
        tracking_uri, parent_run_id: the MLflow store and this search's parent run.
        total_trials: the study's ended trials, earlier invocations' included.
    """

    best: list
    trials: list
    test_scores: dict
    model_uri: str | None
    best_config: str | None
    study_name: str
    engine: str
    objective: str
    metric: str
    storage: str
    tracking_uri: str
    parent_run_id: str
    total_trials: int
    columns: tuple = ()
    has_test: bool = True  # False: pipelines without a test split, no held-out score
    controls: tuple = ()  # the study's control trials, one per label (all invocations)

    def best_model(self):
        """The best trial's fitted model, loaded through MLflow's Keras flavour."""
        import mlflow

        from search.noise import quiet_downloads
        from search.tracking import mlflow_uri

        mlflow.set_tracking_uri(mlflow_uri(self.tracking_uri))
        if not self.model_uri:
            raise ValueError(f"study {self.study_name!r} has no logged best model")
        with quiet_downloads():
            return mlflow.keras.load_model(self.model_uri)

    def table(self):
        """The best trials as the text table the search prints: trial number, config
        columns, the metric and the dead fraction."""
        from search.report import table

        return table(self.best, self.columns, self.metric)

    def report(self):
        """The lines `keras-relu search` prints at the end."""
        from search.tracking import ui_command

        from search.report import controls, next_steps

        title = "Pareto front:" if self.objective == "pareto" else "Best trials:"
        lines = [f"study {self.study_name!r}: {len(self.trials)} new trials, "
                 f"{self.total_trials} in all ({self.storage})", title, self.table()]
        lines += [text for text in [controls(self.controls, self.metric)] if text]
        if self.best and self.best[0].value is not None:
            top, test = self.best[0], self.metric.removeprefix("val_")
            held_out = (f", {test} {self.test_scores[test]:.4g} on the held-out test split"
                        if test in self.test_scores else
                        "" if self.has_test else " (no held-out score: no test data given)")
            lines.append(f"Best: trial {top.number}, {self.metric} {top.value:.4g}{held_out}")
            lines.append(f"Model: {self.model_uri or '-'}  config: {self.best_config or '-'}")
            lines += next_steps(self.study_name, self.best_config, self.tracking_uri)
        lines.append(f"MLflow runs: {ui_command(self.tracking_uri)}")
        return "\n".join(lines)
