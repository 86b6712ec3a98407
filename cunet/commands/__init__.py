"""One module per group of CLI commands; `cunet.cli` discovers every click command listed in a module's `__all__`.

Keep module-level imports to click and `cunet.commands._common`: import the library inside the command body.
"""
