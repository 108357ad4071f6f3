package sqs

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tether-dev/tether/internal/queue"
)

// stub is an SQS of the JSON protocol for what goaws cannot show: it
// records the entries of each SendMessageBatch, refuses those whose body
// is "refuse", answers those whose body is "drop-attrs" as if it had
// dropped their attributes, hands out its messages once, and does not
// delete receipt handle "stale".
type stub struct {
	mu      sync.Mutex
	batches [][]map[string]any
	msgs    []map[string]any
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in map[string]any
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]any{}
	switch r.Header.Get("X-Amz-Target") {
	case "AmazonSQS.GetQueueUrl":
		out["QueueUrl"] = "http://" + r.Host + "/000000000000/" + in["QueueName"].(string)
	case "AmazonSQS.SendMessageBatch":
		var entries []map[string]any
		var ok, failed []map[string]any
		for _, e := range in["Entries"].([]any) {
			e := e.(map[string]any)
			entries = append(entries, e)
			body := e["MessageBody"].(string)
			if body == "refuse" {
				failed = append(failed, map[string]any{"Id": e["Id"], "Code": "InvalidMessageContents", "Message": "no", "SenderFault": true})
				continue
			}
			res := map[string]any{"Id": e["Id"], "MessageId": "new-" + e["Id"].(string), "MD5OfMessageBody": md5hex(body)}
			if body != "drop-attrs" {
				if md5 := attributesMD5(decodeAttributes(e["MessageAttributes"])); md5 != "" {
					res["MD5OfMessageAttributes"] = md5
				}
			}
			ok = append(ok, res)
		}
		s.batches = append(s.batches, entries)
		out["Successful"], out["Failed"] = ok, failed
	case "AmazonSQS.ReceiveMessage":
		out["Messages"] = s.msgs
		s.msgs = nil
	case "AmazonSQS.DeleteMessageBatch":
		var ok, failed []map[string]any
		for _, e := range in["Entries"].([]any) {
			e := e.(map[string]any)
			if e["ReceiptHandle"] == "stale" {
				failed = append(failed, map[string]any{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "Message": "expired", "SenderFault": true})
			} else {
				ok = append(ok, map[string]any{"Id": e["Id"]})
			}
		}
		out["Successful"], out["Failed"] = ok, failed
	default:
		http.Error(w, "unexpected "+r.Header.Get("X-Amz-Target"), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(out)
}

// decodeAttributes is the message attributes of a JSON request entry.
func decodeAttributes(v any) map[string]types.MessageAttributeValue {
	m, _ := v.(map[string]any)
	out := map[string]types.MessageAttributeValue{}
	for k, a := range m {
		a := a.(map[string]any)
		mv := types.MessageAttributeValue{DataType: aws.String(a["DataType"].(string))}
		if s, ok := a["StringValue"].(string); ok {
			mv.StringValue = aws.String(s)
		}
		if s, ok := a["BinaryValue"].(string); ok {
			mv.BinaryValue, _ = base64.StdEncoding.DecodeString(s)
		}
		out[k] = mv
	}
	return out
}

// stubBroker is a Broker (JSON protocol, batches) for a new stub.
func stubBroker(t *testing.T) (*Broker, *stub) {
	t.Helper()
	s := &stub{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	b, err := New(Config{Region: "eu-west-1", Endpoint: srv.URL, AccessKeyID: "AKIATEST", SecretAccessKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}

func TestSendBatches(t *testing.T) {
	b, s := stubBroker(t)
	ctx := ctxFor(t, 10*time.Second)
	var msgs []queue.Message
	for i := range 25 {
		msgs = append(msgs, queue.Message{Value: []byte{byte('a' + i)}})
	}
	big := strings.Repeat("x", 100<<10)
	for range 3 {
		msgs = append(msgs, queue.Message{Value: []byte(big)})
	}
	if err := b.Send(ctx, queue.Queue{Name: "dst"}, msgs); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var bodies []string
	for _, batch := range s.batches {
		sizes = append(sizes, len(batch))
		for _, e := range batch {
			bodies = append(bodies, e["MessageBody"].(string))
		}
	}
	if want := []int{10, 10, 7, 1}; !reflect.DeepEqual(sizes, want) {
		t.Errorf("batches of %v, want %v (10 at most, 256 KiB at most)", sizes, want)
	}
	for i := range msgs {
		if i >= len(bodies) || bodies[i] != string(msgs[i].Value) {
			t.Fatalf("message %d was not sent in order", i)
		}
	}
}

func TestSendRefusedNamed(t *testing.T) {
	b, _ := stubBroker(t)
	ctx := ctxFor(t, 10*time.Second)
	msgs := []queue.Message{{Value: []byte("ok"), Position: "message id-0"}, {Value: []byte("refuse"), Position: "message id-1"}}
	err := b.Send(ctx, queue.Queue{Name: "dst"}, msgs)
	if err == nil || !strings.Contains(err.Error(), "message id-1: InvalidMessageContents") || strings.Contains(err.Error(), "id-0") {
		t.Errorf("Send of a refused message = %v, want an error naming it", err)
	}
	msgs = []queue.Message{{Value: []byte("drop-attrs"), Position: "message id-2", Headers: []queue.Header{{Key: "user", Value: []byte("alice")}}}}
	err = b.Send(ctx, queue.Queue{Name: "dst"}, msgs)
	if err == nil || !strings.Contains(err.Error(), "message id-2") || !strings.Contains(err.Error(), "GoAWS") {
		t.Errorf("Send to a queue that dropped the attributes = %v, want an error saying so", err)
	}
}

func TestFIFOCopies(t *testing.T) {
	b, s := stubBroker(t)
	ctx := ctxFor(t, 10*time.Second)
	attrs := map[string]any{"user": map[string]any{"DataType": "String", "StringValue": "alice"}}
	for i, g := range []string{"g1", "g1", "g2"} {
		id := []string{"id-0", "id-1", "id-2"}[i]
		body := "m" + id
		s.msgs = append(s.msgs, map[string]any{
			"MessageId": id, "ReceiptHandle": "rh-" + id, "Body": body, "MD5OfBody": md5hex(body),
			"MessageAttributes": attrs,
			"Attributes":        map[string]string{"MessageGroupId": g, "MessageDeduplicationId": "dedup-" + id, "AWSTraceHeader": "Root=1-" + id, "ApproximateReceiveCount": "2"},
		})
	}
	r, err := b.Open(ctx, queue.Queue{Name: "src.fifo"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := r.Receive(ctx)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Receive = %d messages %v, want 3", len(msgs), err)
	}
	if msgs[0].Position != "message id-0 (received 2 times)" {
		t.Errorf("Position = %q", msgs[0].Position)
	}
	if meta, ok := msgs[1].Meta.(Meta); !ok || meta.MessageGroupID != "g1" || meta.MessageDeduplicationID != "dedup-id-1" || meta.MessageID != "id-1" {
		t.Errorf("Meta = %+v, want the group and deduplication IDs", msgs[1].Meta)
	}
	other := queue.Message{Key: []byte("k"), Value: []byte("from kafka"), Headers: []queue.Header{{Key: "user", Value: []byte("bob")}, {Key: "empty"}}}
	if err := b.Send(ctx, queue.Queue{Name: "dst.fifo"}, append(msgs, other)); err != nil {
		t.Fatal(err)
	}
	if len(s.batches) != 1 || len(s.batches[0]) != 4 {
		t.Fatalf("sent %v, want one batch of 4", s.batches)
	}
	for i, e := range s.batches[0][:3] {
		id := []string{"id-0", "id-1", "id-2"}[i]
		if e["MessageGroupId"] != []string{"g1", "g1", "g2"}[i] || e["MessageDeduplicationId"] != id || e["MessageBody"] != "m"+id {
			t.Errorf("entry %d = %v, want its group, and its source message ID as deduplication ID", i, e)
		}
		if !reflect.DeepEqual(e["MessageAttributes"], attrs) {
			t.Errorf("entry %d attributes = %v, want %v", i, e["MessageAttributes"], attrs)
		}
		trace, _ := e["MessageSystemAttributes"].(map[string]any)["AWSTraceHeader"].(map[string]any)
		if trace["StringValue"] != "Root=1-"+id {
			t.Errorf("entry %d system attributes = %v, want its AWSTraceHeader", i, e["MessageSystemAttributes"])
		}
	}
	e := s.batches[0][3]
	if e["MessageGroupId"] != "k" || len(e["MessageDeduplicationId"].(string)) != 64 ||
		!reflect.DeepEqual(e["MessageAttributes"], map[string]any{"user": map[string]any{"DataType": "String", "StringValue": "bob"}}) {
		t.Errorf("entry of a message not from SQS = %v, want group = its key, a digest for deduplication, its non-empty headers as String attributes", e)
	}
	// One SQS did not delete fails the Ack, named.
	msgs[2].Ack = "stale"
	err = r.Ack(ctx, msgs)
	if err == nil || !strings.Contains(err.Error(), "message id-2 (received 2 times): ReceiptHandleIsInvalid") || !strings.Contains(err.Error(), "visibility timeout") {
		t.Errorf("Ack with a stale receipt handle = %v, want an error naming it", err)
	}
}
