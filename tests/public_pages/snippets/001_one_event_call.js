await fetch('http://localhost:8080/api/v1/client/events', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer sk_test_67d9fb04f0344036ba92ecc973f1445a'
},
body: JSON.stringify({
eventIdempotencyKey: crypto.randomUUID(),
eventName: 'chat_completion',
customerReferenceId: 'cus_123',
featureKey: 'ai_summarization',
costInput: {
model: 'gpt-4o',
modelProvider: 'openai',
},
usageUnits: response.usage.total_tokens,
costAmount: 0.05,
})
})
