"""The core: config, log schema, store, run directories, registry, model weights, prompts, embeddings,
endpoints. It imports no stage and no service."""
