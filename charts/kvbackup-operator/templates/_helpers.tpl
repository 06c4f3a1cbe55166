{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "kvbackup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "kvbackup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kvbackup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvbackup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kvbackup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kvbackup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kvbackup
{{- end }}

{{- define "kvbackup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kvbackup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kvbackup.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator does with the resources of the namespaces it watches; the same rules
go into the ClusterRole (whole cluster) or into one Role per watched namespace.
*/}}
{{- define "kvbackup.namespacedRules" -}}
- apiGroups: ["kvbackup.io"]
  resources: ["keybackups", "keyrestores"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kvbackup.io"]
  resources: ["keybackups/status", "keyrestores/status"]
  verbs: ["patch"]
# Snapshots are stored in Secrets (created, replaced when a run is redone, listed, read,
# and removed a snapshot at a time with deletecollection); the Secrets named by
# spec.credentials are read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "update", "deletecollection"]
# kopf posts Events (core v1, generateName); it never updates or patches one.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* kopf discovers the served versions of the CRDs and follows changes of them. */}}
{{- define "kvbackup.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* KVBACKUP_DEFAULT_IDENTITY_RULES: the switches' rules, then the listed ones. */}}
{{- define "kvbackup.identityRules" -}}
{{- $everything := dict "vaultUrls" (list "*") "blobUrls" (list "*") -}}
{{- $rules := list -}}
{{- if .Values.defaultIdentity.allNamespaces -}}
{{- $rules = append $rules (merge (dict "namespaces" (list "*") "restoreFromNamespaces" (list "*")) $everything) -}}
{{- end -}}
{{- if .Values.defaultIdentity.releaseNamespace -}}
{{- $rules = append $rules (merge (dict "namespaces" (list .Release.Namespace)) $everything) -}}
{{- end -}}
{{- $rules = concat $rules .Values.defaultIdentity.rules -}}
{{- if $rules }}{{ toJson $rules }}{{ else }}[]{{ end -}}
{{- end -}}

{{/*
The metrics port, after checking that what needs it has it: a ServiceMonitor or alert
rules without the endpoint they read would only stay silent.
*/}}
{{- define "kvbackup.metricsPort" -}}
{{- $port := int .Values.settings.metricsPort }}
{{- $metrics := .Values.metrics }}
{{- if and (eq $port 0) (or $metrics.serviceMonitor.enabled $metrics.prometheusRule.enabled) }}
{{- fail "metrics.serviceMonitor and metrics.prometheusRule need the metrics endpoint: set settings.metricsPort above 0, or disable them" }}
{{- end }}
{{- if and $metrics.serviceMonitor.enabled (not $metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes through the metrics Service" }}
{{- end }}
{{- $port }}
{{- end }}

{{- define "kvbackup.metricsSelectorLabels" -}}
{{ include "kvbackup.selectorLabels" . }}
app.kubernetes.io/component: metrics
{{- end }}
