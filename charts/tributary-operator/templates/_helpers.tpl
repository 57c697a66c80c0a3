{{/* The release's full name, at most 63 characters. */}}
{{- define "tributary-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "tributary-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tributary-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tributary
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "tributary-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tributary-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tributary-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The rules the operator needs where it reconciles pipelines: one per kind,
each verb a call the operator makes (see docs/operator.md "Reconcile" and
operator/tests/chart.rs, which checks this list against operator/src/rbac.rs
and the calls).
*/}}
{{- define "tributary-operator.pipelineRules" -}}
# Watch pipelines, and read one on startup to check the CRD is installed.
- apiGroups: [tributary.dev]
  resources: [analyticspipelines]
  verbs: [get, list, watch]
# Write the status (a replace, conditional on the version read).
- apiGroups: [tributary.dev]
  resources: [analyticspipelines/status]
  verbs: [update]
# The pipeline's settings (ConfigMap) and in-cluster Services: watched,
# server-side applied (create and patch), deleted when no longer wanted.
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
# The capture, consumer, query and auth Deployments, the same way; the
# consumer's replicas are set from lag by patching the Deployment.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The migration Job: read before it is created, created once, old ones deleted.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# A PodDisruptionBudget per workload.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# A HorizontalPodAutoscaler for capture and query when their spec asks:
# applied, listed and deleted when no longer wanted (not watched).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, create, patch, delete]
# The migration Job's pods: listed while it runs, to tell why one cannot
# start (unschedulable, a missing Secret).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Events on pipelines (a repeat is a patch of the first).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
