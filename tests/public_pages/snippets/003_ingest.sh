curl -X POST https://observe.tansohq.com/api/events/ingest \
-H "Authorization: Bearer obs_..." \
-H "Content-Type: application/json" \
-d '{
"events": [{
"eventName": "chat",
"customerReferenceId": "acme-corp",
"featureKey": "ai_chat",
"model": "gpt-4o-mini",
"modelProvider": "openai",
"inputTokens": 150,
"outputTokens": 80
}]
}'
