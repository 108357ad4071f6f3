package kube

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestServicePorts(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP}}},
	}}}
	svc := func(ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Ports: ports}}
	}
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want string // the maps, or the error's start
	}{
		{"number", svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}), "[{80 8080 }]"},
		{"same number", svc(corev1.ServicePort{Port: 8080, TargetPort: intstr.FromInt32(8080)}), "[]"},
		{"unset target", svc(corev1.ServicePort{Port: 9000}), "[]"},
		{"named", svc(corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}), "[{80 8080 web}]"},
		{"named UDP port is not TCP", svc(corev1.ServicePort{Port: 53, TargetPort: intstr.FromString("dns")}), "error: service/web: port 53 targets the port named \"dns\""},
		{"UDP service port", svc(corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)}), "[]"},
		{"unknown name", svc(corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("grpc")}), "error: service/web: port 80 targets the port named \"grpc\", which no container of pod web-1 declares"},
		{"sorted", svc(corev1.ServicePort{Port: 90, TargetPort: intstr.FromInt32(9090)}, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}), "[{80 8080 } {90 9090 }]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maps, err := servicePorts(tc.svc, pod)
			got := fmt.Sprint(maps)
			if maps == nil {
				got = "[]"
			}
			if err != nil {
				got = "error: " + err.Error()
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("servicePorts = %s, want %s", got, tc.want)
			}
		})
	}
}
