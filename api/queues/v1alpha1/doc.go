// Package v1alpha1 is tether's queue splitting API, queues.tether.dev/v1alpha1:
// QueueSplit, the custom resource a platform team writes once per
// consuming workload to say which queues it reads, where it reads their
// names and how tether-operator reaches their brokers. The operator keeps
// each split's state in its status.
//
// +kubebuilder:object:generate=true
// +groupName=queues.tether.dev
package v1alpha1
