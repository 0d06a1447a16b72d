{{- define "sandbox-gateway.fullname" -}}
{{- printf "%s" .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sandbox-gateway.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "sandbox-gateway.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sandbox-gateway.env" -}}
- name: SANDBOX_HOME
  value: /srv/sandbox/home
- name: SANDBOX_SECRETS_DIR
  value: /run/secrets/sandbox
- name: SANDBOX_AUTH_MODE
  value: jupyterhub
- name: SANDBOX_HUB_API_URL
  value: {{ .Values.jupyterhub.hubApiUrl | quote }}
- name: SANDBOX_HUB_SERVICE_NAME
  value: {{ .Values.jupyterhub.serviceName | quote }}
- name: SANDBOX_SERVICE_PREFIX
  value: {{ printf "/services/%s/" .Values.jupyterhub.serviceName | quote }}
{{- if .Values.redis.url }}
- name: SANDBOX_RATE_LIMIT_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- range $name, $value := .Values.settings }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "sandbox-gateway.secretVolume" -}}
- name: secrets
  projected:
    defaultMode: 0400
    sources:
      - secret:
          name: {{ .Values.postgresql.existingSecret }}
          items:
            - key: {{ .Values.postgresql.secretKey }}
              path: sandbox_db_url
      - secret:
          name: {{ .Values.jupyterhub.apiTokenSecret.name }}
          items:
            - key: {{ .Values.jupyterhub.apiTokenSecret.key }}
              path: sandbox_hub_api_token
{{- end -}}
