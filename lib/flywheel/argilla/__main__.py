"""`python -m flywheel.argilla up | down | status`: the embedded server's command, without the workbench CLI
(how `flywheel.core.argilla_login` starts and stops it for its clients)."""

from flywheel.argilla.server import app

app()
