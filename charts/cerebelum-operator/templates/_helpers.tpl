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

{{- define "cerebelum.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
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
*/}}
{{- define "cerebelum.rules" -}}
- apiGroups: [cerebelum.io]
  resources: [workflows]
  verbs: [list, watch, patch]
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
  verbs: [create, get, watch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
{{- end -}}
