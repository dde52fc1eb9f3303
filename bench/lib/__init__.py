"""What every benchmark shares: the load generators (`load`), starting and stopping what is
measured (`targets`, `hosts`), the actions sent to it (`actions`) and the output (`report`)."""
