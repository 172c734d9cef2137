// Add after any AI API call
await fetch('https://api.tansohq.com/api/v1/client/events', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer YOUR_API_KEY'
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
})
})
