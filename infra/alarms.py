"""CloudWatch alarms on the queues.

- DLQ depth: any message there is a run that failed `MAX_RECEIVE_COUNT` deliveries;
  it needs a look even though the sweeper re-dispatches the run.
- Age of the oldest work message: workers are down, too few, or stuck. A message
  stays in flight while its run holds the lease, so runs whose single step lasts
  longer than the threshold also trip it: size the threshold above the longest step.

No actions are attached; add them with `alarm.add_alarm_action(...)` (e.g. an SNS
topic), as shown in docs/deploy.md.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class QueueAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        dlq: sqs.IQueue,
        max_message_age: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dlq_depth = cloudwatch.Alarm(
            self,
            "DlqDepth",
            alarm_description="Messages in the orchestrator dead-letter queue",
            metric=dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.oldest_message_age = cloudwatch.Alarm(
            self,
            "OldestMessageAge",
            alarm_description=(
                "The oldest orchestrator work message is older than "
                f"{max_message_age.to_seconds()} s: workers down or too few"
            ),
            metric=queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=max_message_age.to_seconds(),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    @property
    def all(self) -> tuple[cloudwatch.Alarm, ...]:
        return (self.dlq_depth, self.oldest_message_age)
