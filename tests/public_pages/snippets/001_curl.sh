curl -X POST http://localhost:8080/api/v1/client/events \
-H "Content-Type: application/json" \
-H "Authorization: Bearer sk_test_67d9fb04f0344036ba92ecc973f1445a" \
-d '{
"eventIdempotencyKey": "550e8400-e29b-41d4-a716-446655440000",
"eventName": "chat_completion",
"customerReferenceId": "cus_123",
"featureKey": "ai_summarization",
"costInput": {
"model": "gpt-4o",
"modelProvider": "openai"
},
"usageUnits": 1847,
"costAmount": 0.05
}'
