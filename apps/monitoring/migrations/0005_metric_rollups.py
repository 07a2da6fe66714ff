# Metric rollups (apps/monitoring/rollups.py) and the engine's in-flight count on each
# invocation record. The 321 histogram columns per table (apps/monitoring/histogram.py) are
# listed by a loop rather than written out; the operations are what makemigrations generates.

import django.db.models.deletion
from django.db import migrations, models

# Frozen here: a later change to the edges needs a migration of its own.
BUCKET_COLUMNS = [f"c{k:03d}" for k in range(321)]


def rollup_fields(histogram_field, percentiles=True):
    return [
        *(
            [
                (name, models.FloatField(blank=True, null=True))
                for name in ("duration_p50", "duration_p90", "duration_p99")
            ]
            if percentiles
            else []
        ),
        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
        ("version", models.PositiveIntegerField()),
        ("bucket", models.BigIntegerField()),
        ("invocations", models.BigIntegerField(default=0)),
        ("errors", models.BigIntegerField(default=0)),
        ("throttles", models.BigIntegerField(default=0)),
        ("timeouts", models.BigIntegerField(default=0)),
        ("crashes", models.BigIntegerField(default=0)),
        ("cold_starts", models.BigIntegerField(default=0)),
        ("duration_count", models.BigIntegerField(default=0)),
        ("duration_sum", models.FloatField(default=0.0)),
        ("duration_max", models.FloatField(blank=True, null=True)),
        ("init_count", models.BigIntegerField(default=0)),
        ("init_sum", models.FloatField(default=0.0)),
        ("peak_memory_kb", models.BigIntegerField(blank=True, null=True)),
        ("peak_concurrency", models.IntegerField(blank=True, null=True)),
        *[(name, histogram_field(default=0)) for name in BUCKET_COLUMNS],
        (
            "environment",
            models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="tenancy.environment",
            ),
        ),
        (
            "function",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="functions.function",
            ),
        ),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("functions", "0010_test_event"),
        ("monitoring", "0004_invocation_trigger_draft"),
        ("tenancy", "0005_apitoken_parent"),
    ]

    operations = [
        migrations.AddField(
            model_name="invocation",
            name="concurrency",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="MetricHour",
            fields=rollup_fields(models.IntegerField),
            options={
                "indexes": [
                    models.Index(fields=["function", "bucket"], name="metrichour_function_bucket"),
                    models.Index(fields=["bucket"], name="metrichour_bucket"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("function", "environment", "version", "bucket"), name="metrichour_key"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="MetricMinute",
            fields=rollup_fields(models.IntegerField),
            options={
                "indexes": [
                    models.Index(fields=["function", "bucket"], name="metricminute_function_bucket"),
                    models.Index(fields=["bucket"], name="metricminute_bucket"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("function", "environment", "version", "bucket"), name="metricminute_key"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="MetricTotal",
            fields=rollup_fields(models.BigIntegerField, percentiles=False),
            options={
                "indexes": [models.Index(fields=["bucket"], name="metrictotal_bucket")],
                "constraints": [
                    models.UniqueConstraint(fields=("function", "environment", "version"), name="metrictotal_key")
                ],
            },
        ),
    ]
