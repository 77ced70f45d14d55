"""A trained candidate as an MLflow model: MLflow's generic python flavour around the candidate folder, so
`mlflow.pyfunc.load_model(uri).predict(["my vpn is down"])` routes exactly as `flywheel serve` would (every
kind: TF-IDF, embeddings, encoders, causal LMs, ensembles). Loading needs the flywheel package installed."""

from __future__ import annotations

import mlflow.pyfunc

ROUTER_ARTIFACT = "router"  # the candidate folder inside the MLflow model


class RouterModel(mlflow.pyfunc.PythonModel):
    """Questions in (a list of strings, or a DataFrame whose first column holds them), experts out."""

    def load_context(self, context) -> None:
        from flywheel.core.routers import load_router

        self.router = load_router(context.artifacts[ROUTER_ARTIFACT])

    def predict(self, context, model_input: list[str], params=None) -> list[str]:  # MLflow reads the hints
        if hasattr(model_input, "columns"):  # a DataFrame, as MLflow's scoring server hands it over
            model_input = model_input[model_input.columns[0]]
        return list(self.router.predict([str(text) for text in model_input]))
