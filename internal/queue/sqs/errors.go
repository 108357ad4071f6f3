package sqs

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tether-dev/tether/internal/queue"
)

// fail makes err a *queue.Error about op, with hint or, if that is empty,
// one derived from err.
func (b *Broker) fail(op string, err error, hint string) error {
	if errors.Is(err, context.DeadlineExceeded) && !isAPI(err) {
		err = fmt.Errorf("SQS did not answer in time: %w", err)
	}
	return queue.Fail(queue.KindSQS, b.addr, op, err, hint, b.hint)
}

// hint says what a user can do about err.
func (b *Broker) hint(err error) string {
	switch code(err) {
	case "":
	case "AccessDenied", "AccessDeniedException", "AuthorizationError", "KMS.AccessDeniedException":
		return "SQS refuses tether-operator's keys: grant them sqs:* on the queue and on its copies, named QUEUE-tether-* (and kms:GenerateDataKey and kms:Decrypt on the queue's KMS key, if it has one)"
	case "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "IncompleteSignature",
		"MissingAuthenticationToken", "InvalidSecurity", "ExpiredToken", "AuthFailure":
		return fmt.Sprintf("SQS does not take the keys: check the QueueSplit's sqs.accessKeyID and sqs.secretAccessKey, and its sqs.region (%s)", b.cfg.Region)
	case "RequestThrottled", "ThrottlingException", "OverLimit", "KMS.ThrottlingException":
		return "SQS throttles tether-operator's requests: they are tried again"
	case "QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently":
		return "SQS refuses for 60 s to create a queue of the name of one just deleted: it is tried again"
	default:
		return "" // SQS answered; its error says it
	}
	if _, ok := errors.AsType[*smithyhttp.RequestSendError](err); ok || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("check the QueueSplit's sqs endpoint (%s), region (%s) and keys, and that tether-operator can reach it", b.addr, b.cfg.Region)
	}
	return ""
}

// isAPI says whether err is one SQS answered with.
func isAPI(err error) bool {
	_, ok := errors.AsType[smithy.APIError](err)
	return ok
}

// code is the error code SQS answered with, "" if it did not answer.
func code(err error) string {
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		return ae.ErrorCode()
	}
	return ""
}

// isNotFound says whether err is SQS saying the queue does not exist (in
// the JSON protocol or the query one).
func isNotFound(err error) bool {
	if _, ok := errors.AsType[*types.QueueDoesNotExist](err); ok {
		return true
	}
	switch code(err) {
	case "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue":
		return true
	}
	return false
}

// notFound is the error about queue name, which does not exist.
func (b *Broker) notFound(op, name string, err error) error {
	return b.fail(op, queue.NotFound("queue", name, err),
		fmt.Sprintf("the app creates queue %s: check that it ran and that the QueueSplit names the queue right (and its sqs.region, %s)", name, b.cfg.Region))
}
