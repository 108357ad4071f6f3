package main

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
)

// consumeSQS receives from SQS_QUEUE_URL until ctx is done, deleting each
// visit once logged (one not deleted comes back after its visibility
// timeout). Requests are unsigned: the demo's SQS is the goaws emulator.
func consumeSQS(ctx context.Context) error {
	queueURL := envOr("SQS_QUEUE_URL", "http://goaws:4100/000000000000/ip-visits")
	u, err := url.Parse(queueURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("SQS_QUEUE_URL %q is not a queue URL (http://goaws:4100/000000000000/ip-visits)", queueURL)
	}
	opts := sqs.Options{
		Region:       envOr("AWS_REGION", "us-east-1"),
		BaseEndpoint: aws.String(u.Scheme + "://" + u.Host),
		Credentials:  aws.AnonymousCredentials{},
	}
	var fns []func(*sqs.Options)
	if envOr("SQS_EMULATOR", "") == "goaws" {
		// goaws speaks only SQS's query protocol.
		fns = append(fns, func(o *sqs.Options) { o.Protocol = awsquery.New(schemas.AmazonSQS) })
	}
	c := sqs.New(opts, fns...)
	log.Printf("consuming %s from SQS", path.Base(u.Path))
	for ctx.Err() == nil {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Printf("sqs: %v (again in 1s)", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for _, m := range out.Messages {
			user := ""
			if a, ok := m.MessageAttributes["x-tether-user"]; ok && a.StringValue != nil {
				user = *a.StringValue
			}
			logVisit([]byte(aws.ToString(m.Body)), user)
			if _, err := c.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				log.Printf("sqs: deleting a message: %v", err)
			}
		}
	}
	return nil
}
