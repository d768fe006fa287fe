{{/* Names and labels shared by every resource of the chart. */}}

{{- define "smartlinks.labels" -}}
app.kubernetes.io/name: smartlinks
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one stage: (dict "root" $ "stage" "edge"). */}}
{{- define "smartlinks.selector" -}}
app.kubernetes.io/name: smartlinks
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end -}}

{{/* A stage's resource name: release-stage. */}}
{{- define "smartlinks.name" -}}
{{ printf "%s-%s" .root.Release.Name .stage | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The Secret every stage reads its secrets from. */}}
{{- define "smartlinks.secretName" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-secrets" .Release.Name) }}
{{- end -}}

{{/* A stage's image. */}}
{{- define "smartlinks.image" -}}
{{ printf "%s/smartlinks-%s:%s" .root.Values.image.registry .stage .root.Values.image.tag }}
{{- end -}}

{{/*
The container's environment of a stage: its ConfigMap, then the secrets it
reads, by key, from the chart's Secret. (dict "root" $ "stage" "api" "secrets" (list "API_OPERATOR_KEY"))
*/}}
{{- define "smartlinks.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "smartlinks.name" . }}
env:
{{- range .secrets }}
  - name: {{ . }}
    valueFrom:
      secretKeyRef:
        name: {{ include "smartlinks.secretName" $.root }}
        key: {{ . }}
{{- end }}
{{- end -}}

{{/* Probes on the admin listener: /healthz (live) and /readyz (ready: stores reachable). */}}
{{- define "smartlinks.probes" -}}
livenessProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: admin }
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: { path: /healthz, port: admin }
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}

{{/* The pod template's shared parts: security contexts, pull secrets. */}}
{{- define "smartlinks.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The engines' settings every stage and the migration read, as YAML. */}}
{{- define "smartlinks.common" -}}
KAFKA_BROKERS: {{ .Values.engines.kafkaBrokers | quote }}
KAFKA_REPLICATION: {{ .Values.engines.kafkaReplication | quote }}
CLICKHOUSE_URL: {{ .Values.engines.clickhouseUrl | quote }}
CLICKHOUSE_CLUSTER: {{ .Values.engines.clickhouseCluster | quote }}
CLICKHOUSE_DATABASE: {{ .Values.engines.clickhouseDatabase | quote }}
CLICKHOUSE_USER: {{ .Values.engines.clickhouseUser | quote }}
MONGODB_DATABASE: {{ .Values.engines.mongodbDatabase | quote }}
SMARTLINKS_ENV: production
RUST_LOG: info
{{- end -}}
