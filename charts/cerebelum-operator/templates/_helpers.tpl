{{- define "cerebelum.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cerebelum.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's pods only: worker pods carry component: worker. */}}
{{- define "cerebelum.uiSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ui
{{- end -}}

{{- define "cerebelum.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "cerebelum.serviceAccountName" -}}
{{- default (include "cerebelum.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
Exactly what the operator does, nothing more (a test compares these rules with the API
server's audit log of a full run):
  workflows: list+watch (Kopf's watch), patch (removing consumed approval annotations)
  workflows/status: update (one status write per reconciliation)
  events: create; secrets: get (action tokens and headers)
  jobs: create, get, watch (one Job), delete (cancelled attempts); pods: list (termination message)
  stepruns: list+watch (results of python steps), create (one per attempt), delete (cancelled
    attempts), deletecollection (a finished workflow's StepRuns)
*/}}
{{- define "cerebelum.rules" -}}
- apiGroups: [cerebelum.io]
  resources: [workflows]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [cerebelum.io]
  resources: [workflows/status]
  verbs: [update]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get, watch, delete, deletecollection]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [cerebelum.io]
  resources: [stepruns]
  verbs: [list, watch, create, delete, deletecollection]
- apiGroups: [cerebelum.io]
  resources: [workflowtemplates]
  verbs: [get]
- apiGroups: [cerebelum.io]
  resources: [cronworkflows]
  verbs: [list, watch]
- apiGroups: [cerebelum.io]
  resources: [cronworkflows/status]
  verbs: [update]
{{- end -}}

{{- define "cerebelum.workerServiceAccountName" -}}
{{- default (printf "%s-worker" (include "cerebelum.fullname" .)) .Values.pythonWorkers.serviceAccountName -}}
{{- end -}}

{{/*
What a `cerebelum worker` does: watch its queue's StepRuns (get when a write conflicts) and
write their status (claim, lease renewals, result). It never sees Workflows or Secrets.
*/}}
{{- define "cerebelum.workerRules" -}}
- apiGroups: [cerebelum.io]
  resources: [stepruns]
  verbs: [get, list, watch]
- apiGroups: [cerebelum.io]
  resources: [stepruns/status]
  verbs: [update]
{{- end -}}
