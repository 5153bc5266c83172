#!/usr/bin/env bash
# The SQS topology `mediafleet queues setup` creates, as AWS CLI calls, for infrastructure pipelines that own
# the queues. Usage: PREFIX=mediafleet REGION=eu-west-1 bash deploy/sqs/setup.sh
set -euo pipefail
PREFIX="${PREFIX:-mediafleet}"
REGION="${REGION:-us-east-1}"
LEASE_SECONDS="${LEASE_SECONDS:-120}"
MAX_RECEIVE_COUNT="${MAX_RECEIVE_COUNT:-30}"
CLASSES="${CLASSES:-image video cache notify}"
RETENTION=1209600 # 14 days
aws_sqs() { aws --region "$REGION" sqs "$@"; }
for class in $CLASSES; do
  dlq_url=$(aws_sqs create-queue --queue-name "$PREFIX-$class-dlq" --query QueueUrl --output text)
  aws_sqs set-queue-attributes --queue-url "$dlq_url" --attributes "MessageRetentionPeriod=$RETENTION"
  dlq_arn=$(aws_sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn \
    --query Attributes.QueueArn --output text)
  url=$(aws_sqs create-queue --queue-name "$PREFIX-$class" --query QueueUrl --output text)
  redrive=$(printf '{"deadLetterTargetArn":"%s","maxReceiveCount":%s}' "$dlq_arn" "$MAX_RECEIVE_COUNT")
  attrs=$(jq -n --arg v "$LEASE_SECONDS" --arg r "$RETENTION" --arg p "$redrive" \
    '{VisibilityTimeout:$v, MessageRetentionPeriod:$r, ReceiveMessageWaitTimeSeconds:"20", RedrivePolicy:$p}')
  aws_sqs set-queue-attributes --queue-url "$url" --attributes "$attrs"
  echo "$PREFIX-$class -> $PREFIX-$class-dlq (maxReceiveCount $MAX_RECEIVE_COUNT)"
done
