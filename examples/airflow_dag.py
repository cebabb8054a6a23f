"""The course's retraining DAG (query -> export -> train -> deploy) with walsrec, in Airflow.

Copy this file into Airflow's dags/ folder on a machine where walsrec is installed and point
PIPELINE at your pipeline.toml (see examples/pipeline.toml). One task per step: each runs
`walsrec pipeline --only STEP`, which skips the step when its inputs and settings have not
changed since its last successful run (the state is kept in pipeline.state.json beside the
TOML), so a retry or a rerun of the DAG redoes only what is needed. The `query` task stands
for whatever writes the interaction files that [prepare] reads (a BigQuery export in the
course). A `walsrec serve --model MODEL_DIR` (or the [export] `to` directory) picks the new
model up by itself: no restart task is needed.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.models.baseoperator import chain
from airflow.operators.bash import BashOperator

PIPELINE = "/srv/recs/pipeline.toml"

with DAG(
    dag_id="walsrec_retrain",
    description="Retrain the WALS recommender daily and deploy the new export",
    schedule="0 3 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["walsrec"],
) as dag:
    query = BashOperator(
        task_id="query",
        bash_command="echo 'replace me: write the interactions named in [prepare] inputs'",
    )
    tasks = [query]
    for step in ["prepare", "train", "evaluate", "export", "predict"]:
        tasks.append(
            BashOperator(
                task_id=step,
                bash_command=f"walsrec pipeline --config {PIPELINE} --only {step} --quiet",
            )
        )
    chain(*tasks)  # query >> prepare >> train >> evaluate >> export >> predict
