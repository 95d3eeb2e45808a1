"""The "Resumable jobs" page of Airflow's UI: the records of resumable tasks across DAGs, and a
guarded clear. :mod:`resumable.ui.plugin` registers it; :mod:`resumable.ui.app` serves it."""
