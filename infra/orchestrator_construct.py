"""`Orchestrator`: the whole deployment as one construct (an L3) for any CDK stack.

    from infra import ApiAuth, Orchestrator, Retention

    orch = Orchestrator(self, "Orchestrator", api_auth=ApiAuth.iam())
    orch.worker_environment()  # the variables that point a worker at it

It builds one construct per concern and does all the wiring and every grant here,
so the permissions of each principal can be read in one place (`infra.permissions`
holds the statements). Workers in your datacenter need no AWS resources of their
own: the worker role (or the worker policy on an identity you already have) and the
environment variables from `worker_environment()` are enough.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import nag
from infra.alarms import QueueAlarms
from infra.api import Api, ApiAuth, ApiLimits
from infra.bundling import lambda_code
from infra.declared import (
    DeclaredState,
    ScheduleSpec,
    TaskQueuesProp,
    declared_schedules,
    synth_time_ms,
    task_queues_prop,
)
from infra.function import OrchestratorFunction
from infra.permissions import Grant, Resources, api_grants, sweeper_grants, worker_grants
from infra.queues import WorkQueues
from infra.scheduling import RecurringScheduling, Scheduling
from infra.state import StateTable, TableBilling
from infra.sweeper import Sweeper
from infra.values import ValueBucket
from infra.worker_access import WorkerAccess
from orchestrator import resources as r
from orchestrator.model import BUILD_ID_HELP, BUILD_ID_RE

MAX_LEASE_SECONDS = 12 * 3600  # the SQS visibility timeout maximum
RUNTIME_REASON = (
    "Python 3.12 is a supported Lambda runtime and the one the bundled wheels are "
    "built for (pip --python-version 3.12); moving to a newer runtime is a deliberate "
    "change of infra/bundling.py together with the runtime."
)


@dataclass(frozen=True)
class Retention:
    """What survives a stack deletion, and for how long logs are kept.

    The default keeps the data: the table and queues are retained and the table has
    deletion protection. `Retention.ephemeral()` suits development stacks.
    """

    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN
    deletion_protection: bool = True
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH

    @classmethod
    def ephemeral(cls) -> Retention:
        return cls(RemovalPolicy.DESTROY, False, logs.RetentionDays.ONE_WEEK)


class Orchestrator(Construct):
    """The state table, the queues, the value bucket, the schedule groups, the API,
    the sweeper, the worker access and the alarms, wired together.

    Keyword-only props:
    - `billing`: the table's billing (on demand by default);
    - `lease_seconds`: the workflow lease, also the work queue's visibility timeout;
    - `api_auth`: `ApiAuth.iam()` (default, SigV4) or `ApiAuth.jwt(issuer=, audience=)`;
    - `retention`: removal policy, table deletion protection, log retention;
    - `worker_principals`: ARNs allowed to assume the worker role;
    - `worker_trust_anchor_arn`: an IAM Roles Anywhere trust anchor whose certificates
      may assume it (with neither, there is no worker role: attach `worker_policy`);
    - `worker_session_duration`: the worker role's maximum session (one hour);
    - `api_limits`: stage throttling and the API function's reserved concurrency;
    - `sweeper_reserved_concurrency`: the sweeper's (1: one sweep at a time);
    - `name_prefix`: `None` lets CloudFormation name resources (several deployments per
      account); a string gives `<prefix>orchestrator-state` and so on ("" gives the
      names the local stack uses);
    - `max_message_age`: the oldest-message alarm threshold;
    - `task_queues`: task queues besides `default`, one SQS queue and DLQ each, named
      `<work queue>-<task queue>` (`resources.task_queue_name`); workers and the API
      find them from `ORCHESTRATOR_TASK_QUEUES`. A list of names, or a dict of name ->
      flow-control limits (`{"gpu": {"max_concurrency": 4, "rate_limit": 100,
      "rate_period_seconds": 60}}`, or None for none), which every deploy writes to
      the queue's item (`infra.declared`; `default` may carry limits too);
    - `schedules`: `ScheduleSpec`s, recurring schedules written at every deploy (the
      definition item and the Scheduler schedule; `infra.declared`);
    - `pinned_builds`: the build ids whose workers run pinned workflows
      (`versioning="pinned"`): one more queue per task queue and build,
      `resources.pinned_queue_name`, sharing the task queue's DLQ. Workers may not
      create queues here, so a worker of a build not listed refuses to start with a
      message naming this prop. Remove a build once no run is pinned to it
      (`orchestrator list --build-id`, `orchestrator migrate`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        billing: TableBilling | None = None,
        lease_seconds: int = r.DEFAULT_LEASE_SECONDS,
        api_auth: ApiAuth | None = None,
        retention: Retention | None = None,
        worker_principals: Sequence[str] | None = None,
        worker_trust_anchor_arn: str | None = None,
        worker_session_duration: Duration | None = None,
        api_limits: ApiLimits | None = None,
        sweeper_reserved_concurrency: int | None = 1,
        name_prefix: str | None = None,
        max_message_age: Duration | None = None,
        task_queues: TaskQueuesProp = (),
        pinned_builds: Sequence[str] = (),
        schedules: Sequence[ScheduleSpec] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_queue_names, queue_limits = task_queues_prop(task_queues)
        now = synth_time_ms()
        declared = declared_schedules(schedules, self.task_queue_names, now)
        bad = [b for b in pinned_builds if not BUILD_ID_RE.match(b)]
        if bad:
            raise ValueError(f"pinned_builds {bad}: {BUILD_ID_HELP}")
        if not 1 <= lease_seconds <= MAX_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be within 1..{MAX_LEASE_SECONDS}")
        retention = retention or Retention()
        self.lease_seconds = lease_seconds

        def name(default: str) -> str | None:
            return None if name_prefix is None else f"{name_prefix}{default}"

        self.state = StateTable(
            self,
            "State",
            billing=billing or TableBilling.on_demand(),
            deletion_protection=retention.deletion_protection,
            removal_policy=retention.removal_policy,
            table_name=name(r.DEFAULT_TABLE_NAME),
        )
        self.queues = WorkQueues(
            self,
            "Queues",
            lease_seconds=lease_seconds,
            removal_policy=retention.removal_policy,
            queue_name=name(r.DEFAULT_QUEUE_NAME),
            dlq_name=name(r.DEFAULT_DLQ_NAME),
        )
        # One more queue pair per task queue, named after the work queue (its fixed
        # name, or the one CloudFormation generates for it).
        self.task_queues: dict[str, WorkQueues] = {r.DEFAULT_TASK_QUEUE: self.queues}
        base = name(r.DEFAULT_QUEUE_NAME) or self.queues.queue.queue_name
        for tq in self.task_queue_names[1:]:
            self.task_queues[tq] = WorkQueues(
                self,
                f"TaskQueue-{tq}",
                lease_seconds=lease_seconds,
                removal_policy=retention.removal_policy,
                queue_name=r.task_queue_name(base, tq),
                dlq_name=r.task_dlq_name(base, "", tq),
            )
        # One queue per task queue and pinned build: "<task queue>@<build>".
        self.pinned_queues: dict[str, sqs.Queue] = {}
        for tq, pair in self.task_queues.items():
            for build in dict.fromkeys(pinned_builds):
                key = r.pinned_queue_key(tq, build)
                queue_name = r.pinned_queue_name(base, tq, build)
                self.pinned_queues[key] = pair.build_queue(
                    self, f"PinnedQueue-{tq}-{queue_name.rsplit('_', 1)[-1]}", queue_name=queue_name
                )
        self.values = ValueBucket(self, "Values", removal_policy=retention.removal_policy)
        self.scheduling = Scheduling(
            self,
            "Scheduling",
            queues=[
                *(q.queue for q in self.task_queues.values()),
                *self.pinned_queues.values(),
            ],
            removal_policy=retention.removal_policy,
            group_name=name(r.DEFAULT_SCHEDULE_GROUP),
        )
        self.recurring = RecurringScheduling(
            self,
            "Recurring",
            removal_policy=retention.removal_policy,
            group_name=name(r.DEFAULT_RECURRING_GROUP),
        )
        code = lambda_code()  # one asset, bundled once, for both functions
        self.api = Api(
            self,
            "Api",
            code=code,
            environment=self.runtime_environment(),
            auth=api_auth or ApiAuth.iam(),
            log_retention=retention.log_retention,
            removal_policy=retention.removal_policy,
            limits=api_limits,
        )
        self.sweeper = Sweeper(
            self,
            "Sweeper",
            code=code,
            environment=self.runtime_environment(),
            log_retention=retention.log_retention,
            removal_policy=retention.removal_policy,
            reserved_concurrency=sweeper_reserved_concurrency,
        )
        self.worker_access = WorkerAccess(
            self,
            "WorkerAccess",
            principals=worker_principals,
            trust_anchor_arn=worker_trust_anchor_arn,
            session_duration=worker_session_duration,
        )
        # Recurring schedules invoke the API function (their tick decides a start).
        self.recurring.allow_invoke(self.api.handler.function.function_arn)
        self.declared = (
            DeclaredState(
                self,
                "Declared",
                table=self.state.table,
                limits=queue_limits,
                schedules=declared,
                recurring_group=self.recurring.group_name,
                recurring_role_arn=self.recurring.role.role_arn,
                target_arn=self.api.handler.function.function_arn,
                log_retention=retention.log_retention,
                removal_policy=retention.removal_policy,
                now=now,
            )
            if queue_limits or declared
            else None
        )
        self.alarms = QueueAlarms(
            self,
            "Alarms",
            queue=self.queues.queue,
            dlq=self.queues.dlq,
            max_message_age=max_message_age or Duration.minutes(30),
        )
        self._grant()

    def _resources(self) -> Resources:
        return Resources(
            table_arn=self.state.table.table_arn,
            index_arns=self.state.index_arns(),
            queue_arns=[
                *(q.queue.queue_arn for q in self.task_queues.values()),
                *(q.queue_arn for q in self.pinned_queues.values()),
            ],
            dlq_arns=[q.dlq.queue_arn for q in self.task_queues.values()],
            schedules_arn=self.scheduling.schedules_arn(),
            scheduler_role_arn=self.scheduling.role.role_arn,
            recurring_schedules_arn=self.recurring.schedules_arn(),
            recurring_role_arn=self.recurring.role.role_arn,
            values_arn=self.values.objects_arn(),
        )

    def _grant(self) -> None:
        """Every permission of the deployment (the scheduler role's own
        sqs:SendMessage lives with that role in `Scheduling`)."""
        res = self._resources()
        _apply(worker_grants(res), self.worker_access.policy, self.worker_access.add_statements)
        for fn, grants in (
            (self.api.handler, api_grants(res)),
            (self.sweeper.handler, sweeper_grants(res)),
        ):
            _apply(grants, fn.role, fn.add_statements)
            nag.acknowledge(fn.function, "AwsSolutions-L1", RUNTIME_REASON)

    # --- What users of the construct read ------------------------------------------------
    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def worker_role(self) -> iam.Role | None:
        """None unless `worker_principals` or `worker_trust_anchor_arn` was given."""
        return self.worker_access.role

    # Authorization by role (IAM auth): attach a route group's managed policy.
    def grant_read(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        """Read runs, steps and workers, and open the dashboard: an operator read-only role."""
        self.api.grant_read(grantee)

    def grant_start(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        self.api.grant_start(grantee)

    def grant_signal(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        self.api.grant_signal(grantee)

    def grant_operate(self, grantee: iam.IRole | iam.IUser | iam.IGroup) -> None:
        """Cancel, terminate, redrive, fork and migrate runs (one at a time or in
        bulk); manage recurring schedules and queue limits."""
        self.api.grant_operate(grantee)

    @property
    def worker_policy(self) -> iam.ManagedPolicy:
        return self.worker_access.policy

    @property
    def functions(self) -> tuple[OrchestratorFunction, ...]:
        return (self.api.handler, self.sweeper.handler)

    def runtime_environment(self) -> dict[str, str]:
        """The `ORCHESTRATOR_*` variables both functions (and workers) read."""
        return {
            r.ENV_TABLE: self.state.table.table_name,
            r.ENV_QUEUE_URL: self.queues.queue.queue_url,
            r.ENV_QUEUE_ARN: self.queues.queue.queue_arn,
            r.ENV_DLQ_URL: self.queues.dlq.queue_url,
            r.ENV_SCHEDULE_GROUP: self.scheduling.group_name,
            r.ENV_SCHEDULER_ROLE_ARN: self.scheduling.role.role_arn,
            r.ENV_RECURRING_GROUP: self.recurring.group_name,
            r.ENV_RECURRING_ROLE_ARN: self.recurring.role.role_arn,
            r.ENV_LEASE_SECONDS: str(self.lease_seconds),
            r.ENV_BUCKET: self.values.bucket.bucket_name,
            **(
                {r.ENV_TASK_QUEUES: ",".join(self.task_queue_names)}
                if len(self.task_queue_names) > 1
                else {}
            ),
        }

    def worker_policy_for(self, construct_id: str, task_queues: Sequence[str]) -> iam.ManagedPolicy:
        """A worker policy limited to some task queues (a GPU-only fleet): the
        worker's statements with only these queues' SQS actions. Attach it to the
        fleet's identity instead of `worker_policy`."""
        unknown = [q for q in task_queues if q not in self.task_queues]
        if unknown:
            raise ValueError(f"unknown task queue(s) {unknown}; add them to task_queues")
        policy = iam.ManagedPolicy(
            self,
            construct_id,
            description=f"Orchestrator worker serving task queue(s) {', '.join(task_queues)}",
        )
        pinned = [
            q.queue_arn for key, q in self.pinned_queues.items() if key.split("@")[0] in task_queues
        ]
        res = replace(
            self._resources(),
            queue_arns=[*(self.task_queues[q].queue.queue_arn for q in task_queues), *pinned],
        )
        _apply(worker_grants(res), policy, policy.add_statements)
        return policy

    def worker_environment(self) -> dict[str, str]:
        """Everything a worker or client outside AWS needs, besides credentials."""
        return {
            "AWS_REGION": Stack.of(self).region,
            **self.runtime_environment(),
            r.ENV_API_URL: self.api_url,
        }


def _apply(
    grants: list[Grant], holder: Construct, add: Callable[[iam.PolicyStatement], None]
) -> None:
    for grant in grants:
        add(grant.statement)
        nag.acknowledge_wildcards(holder, grant.statement, grant.wildcard_reason)
