"""Scale a search out over KerasTuner's chief/worker engine: the roles of one process
(`roles`), who may talk to the chief (`access`), local processes under one launcher
(`launcher`) and device placement (`strategy`)."""
